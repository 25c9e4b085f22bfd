-- Probability-mass reallocation: where the tuned model's top-1 token sits under the base model
-- (and the base top-1 under the tuned model), over all positions and over divergent ones
-- (js > $tau), per pair and generator. Ranks follow the scorer's tie rule (lower id first), so
-- rank 1 in either direction means the same thing: both models share their top-1.
with

final as (

    select
        pair,
        generator,
        subset,
        count(*) as n_positions,
        avg((rank_in_base_of_top1_tuned = 1)::integer) as share_top1_is_base_top1,
        avg((rank_in_base_of_top1_tuned <= 3)::integer) as share_top1_in_base_top3,
        avg((prob_base_of_top1_tuned < $low_prob)::integer) as share_base_prob_below_low,
        avg(rank_in_base_of_top1_tuned) as mean_rank_in_base,
        median(rank_in_base_of_top1_tuned) as median_rank_in_base,
        avg(prob_base_of_top1_tuned) as mean_prob_base_of_top1_tuned,
        avg((rank_in_tuned_of_top1_base <= 3)::integer) as share_base_top1_in_tuned_top3,
        avg(rank_in_tuned_of_top1_base) as mean_rank_in_tuned
    from stg_token_subsets($tau)
    group by pair, generator, subset

)

select
    pair,
    generator,
    subset,
    n_positions,
    share_top1_is_base_top1,
    share_top1_in_base_top3,
    share_base_prob_below_low,
    mean_rank_in_base,
    median_rank_in_base,
    mean_prob_base_of_top1_tuned,
    share_base_top1_in_tuned_top3,
    mean_rank_in_tuned
from final
order by pair, generator, subset
