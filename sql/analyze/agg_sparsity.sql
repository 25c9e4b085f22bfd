-- Sparsity: share of positions whose js exceeds each threshold of the sweep ($thresholds),
-- per pair and generator. The study's "near-zero" cut is unstated, hence the sweep.
with

scored as (

    select pair, generator, js from tokens

),

thresholds as (

    select unnest($thresholds)::double as threshold

),

counted as (

    select
        scored.pair,
        scored.generator,
        thresholds.threshold,
        count(*) as n_positions,
        count_if(scored.js > thresholds.threshold) as n_above
    from scored
    cross join thresholds
    group by scored.pair, scored.generator, thresholds.threshold

),

final as (

    select
        pair,
        generator,
        threshold,
        n_positions,
        n_above,
        n_above / n_positions as share_above
    from counted

)

select
    pair,
    generator,
    threshold,
    n_positions,
    n_above,
    share_above
from final
order by pair, generator, threshold
