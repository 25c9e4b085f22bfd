-- Lorenz curve of the divergence mass per pair and generator: positions sorted by js from the
-- lowest, the share of all js held by the lowest share of positions, at $lorenz_points + 1
-- evenly spaced population shares (0 and 1 included; each point is the curve's vertex at
-- floor(k * n / $lorenz_points) positions). The diagonal is an even spread; the area between
-- them is half the Gini coefficient (`agg_js_concentration`).
with

scored as (

    select pair, generator, js::double as js from tokens

),

ranked as (

    select
        pair,
        generator,
        row_number() over (partition by pair, generator order by js) as rank_asc,
        sum(js) over (
            partition by pair, generator order by js
            rows between unbounded preceding and current row
        ) as mass_at_or_below,
        sum(js) over (partition by pair, generator) as total_js
    from scored

),

grid as (

    select
        groups.pair,
        groups.generator,
        groups.n_positions,
        (points.k * groups.n_positions) // $lorenz_points as n_lowest
    from (select pair, generator, count(*) as n_positions from scored group by all) as groups
    cross join range($lorenz_points + 1) as points (k)

),

final as (

    select
        grid.pair,
        grid.generator,
        grid.n_lowest / grid.n_positions as population_share,
        -- no position below the first point; an all-zero group has no mass to share
        coalesce(
            ranked.mass_at_or_below / nullif(ranked.total_js, 0),
            grid.n_lowest / grid.n_positions
        ) as mass_share
    from grid
    left join ranked
        on
            grid.pair = ranked.pair
            and grid.generator = ranked.generator
            and grid.n_lowest = ranked.rank_asc

)

select
    pair,
    generator,
    population_share,
    mass_share
from final
order by pair, generator, population_share
