-- The js distribution per pair and generator: mean and the quantiles in $quantiles
-- (linear interpolation, as numpy's default).
with

scored as (

    select pair, generator, js from tokens

),

per_group as (

    select
        pair,
        generator,
        count(*) as n_positions,
        avg(js) as mean_js,
        quantile_cont(js, $quantiles) as js_values
    from scored
    group by pair, generator

),

final as (

    select
        pair,
        generator,
        n_positions,
        mean_js,
        unnest($quantiles)::double as quantile,
        unnest(js_values) as js_value
    from per_group

)

select
    pair,
    generator,
    quantile,
    js_value,
    n_positions,
    mean_js
from final
order by pair, generator, quantile
