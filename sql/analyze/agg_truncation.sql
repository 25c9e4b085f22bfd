-- Truncation error: the study's top-p-truncated js (js_top_p) against exact js, per pair and
-- generator. Spearman = Pearson correlation of average (tie-corrected) ranks: rank() plus half
-- the extra peers, both over one window so each column is sorted once. The windows partition
-- by a small integer `group_id` joined in from `groups`: fast to sort, and DuckDB 2.0.1 fails
-- with an internal error on windows that partition by the scanned columns themselves and order
-- differently.
with

groups as (

    select pair, generator, row_number() over (order by pair, generator) as group_id
    from (select distinct pair, generator from tokens)

),

scored as (

    -- only numbers go through the sorts: the names are joined back on the 1-row-per-group result
    select groups.group_id, tokens.js, tokens.js_top_p
    from tokens
    inner join groups on tokens.pair = groups.pair and tokens.generator = groups.generator

),

ranked as (

    select
        group_id,
        js,
        js_top_p,
        rank() over by_js
            + (count(*) over (by_js range between current row and current row) - 1) / 2
            as rank_js,
        rank() over by_js_top_p
            + (count(*) over (by_js_top_p range between current row and current row) - 1) / 2
            as rank_js_top_p
    from scored
    window
        by_js as (partition by group_id order by js),
        by_js_top_p as (partition by group_id order by js_top_p)

),

per_group as (

    select
        group_id,
        count(*) as n_positions,
        avg(abs(js_top_p - js)) as mae,
        max(abs(js_top_p - js)) as max_abs_error,
        avg(js_top_p - js) as mean_error,
        corr(js, js_top_p) as pearson,
        corr(rank_js, rank_js_top_p) as spearman,
        avg(((js > $tau) != (js_top_p > $tau))::integer) as share_divergent_flipped
    from ranked
    group by group_id

),

final as (

    select groups.pair, groups.generator, per_group.*
    from per_group
    inner join groups on per_group.group_id = groups.group_id

)

select
    pair,
    generator,
    n_positions,
    mae,
    max_abs_error,
    mean_error,
    pearson,
    spearman,
    share_divergent_flipped
from final
order by pair, generator
