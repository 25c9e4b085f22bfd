-- Top-k candidate overlap of the two models for k = 1..5, over all positions and over
-- divergent positions (js > $tau, the study's subset), per pair and generator.
with

per_group as (

    select
        pair,
        generator,
        subset,
        count(*) as n_positions,
        avg(topk_overlap_1) as overlap_1,
        avg(topk_overlap_2) as overlap_2,
        avg(topk_overlap_3) as overlap_3,
        avg(topk_overlap_4) as overlap_4,
        avg(topk_overlap_5) as overlap_5
    from stg_token_subsets($tau)
    group by pair, generator, subset

),

final as (

    select
        pair,
        generator,
        subset,
        n_positions,
        unnest([1, 2, 3, 4, 5]) as k,
        unnest([overlap_1, overlap_2, overlap_3, overlap_4, overlap_5]) as mean_overlap
    from per_group

)

select
    pair,
    generator,
    subset,
    k,
    mean_overlap,
    n_positions
from final
order by pair, generator, subset, k
