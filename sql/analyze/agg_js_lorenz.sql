-- Lorenz curve of the divergence mass per pair and generator: positions sorted by js from the
-- lowest, the share of all js held by the lowest share of positions, at the curve's vertices
-- floor(k * n / $lorenz_points) positions for k = 0..$lorenz_points (0 and 1 included; fewer
-- points when a group has fewer positions). The diagonal is an even spread; the area between
-- them is half the Gini coefficient (`agg_js_concentration`). RL-checkpoint pairs are left out
-- (they have their own analysis), as in `agg_js_concentration`.
with

ranked as (

    select
        pair,
        generator,
        row_number() over ascending as rank_asc,
        sum(js) over (ascending rows between unbounded preceding and current row)
            as mass_at_or_below,
        sum(js) over (partition by pair, generator) as total_js,
        count(*) over (partition by pair, generator) as n_positions
    from stg_pair_js
    window ascending as (partition by pair, generator order by js)

),

vertices as (

    -- rank r is a vertex when floor(k n / L) = r for the smallest k with k n / L >= r
    select
        pair,
        generator,
        rank_asc / n_positions as population_share,
        -- an all-zero group has no mass to share: its curve is the diagonal
        coalesce(mass_at_or_below / nullif(total_js, 0), rank_asc / n_positions) as mass_share
    from ranked
    where
        (((rank_asc * $lorenz_points + n_positions - 1) // n_positions) * n_positions)
        // $lorenz_points = rank_asc

),

final as (

    select pair, generator, population_share, mass_share from vertices
    union all
    select distinct pair, generator, 0.0 as population_share, 0.0 as mass_share from stg_pair_js

)

select
    pair,
    generator,
    population_share,
    mass_share
from final
order by pair, generator, population_share
