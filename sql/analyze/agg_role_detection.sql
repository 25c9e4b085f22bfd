-- How well "js > threshold" finds the decisive roles ($decisive_roles), for each threshold of
-- the sweep: precision, recall and F1 per pair and generator (null role rows left out).
with

scored as (

    select pair, generator, js, list_contains($decisive_roles, role) as is_decisive
    from tokens
    where role is not null

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
        count_if(scored.is_decisive) as n_decisive,
        count_if(scored.js > thresholds.threshold) as n_flagged,
        count_if(scored.js > thresholds.threshold and scored.is_decisive) as n_true_positive
    from scored
    cross join thresholds
    group by scored.pair, scored.generator, thresholds.threshold

),

scored_counts as (

    select
        *,
        n_true_positive / nullif(n_flagged, 0) as precision,
        n_true_positive / nullif(n_decisive, 0) as recall
    from counted

),

final as (

    select
        *,
        n_decisive / n_positions as base_rate,
        2 * precision * recall / nullif(precision + recall, 0) as f1
    from scored_counts

)

select
    pair,
    generator,
    threshold,
    n_positions,
    n_decisive,
    n_flagged,
    n_true_positive,
    base_rate,
    precision,
    recall,
    f1
from final
order by pair, generator, threshold
