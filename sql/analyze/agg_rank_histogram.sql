-- Histogram of the rank under base of the tuned top-1 token: ranks 1..$max_rank, and one
-- bucket ($max_rank + 1) for everything beyond; all positions and divergent ones (js > $tau).
with

bucketed as (

    select
        pair,
        generator,
        subset,
        least(rank_in_base_of_top1_tuned, $max_rank + 1)::integer as rank_bucket
    from stg_token_subsets($tau)

),

counted as (

    select pair, generator, subset, rank_bucket, count(*) as n_positions
    from bucketed
    group by pair, generator, subset, rank_bucket

),

final as (

    select
        pair,
        generator,
        subset,
        rank_bucket,
        case
            when rank_bucket > $max_rank then '>' || $max_rank::varchar
            else rank_bucket::varchar
        end as rank_label,
        n_positions,
        n_positions / sum(n_positions) over (partition by pair, generator, subset)
            as share_positions
    from counted

)

select
    pair,
    generator,
    subset,
    rank_bucket,
    rank_label,
    n_positions,
    share_positions
from final
order by pair, generator, subset, rank_bucket
