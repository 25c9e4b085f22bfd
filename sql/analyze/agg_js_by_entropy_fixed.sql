-- js by base-model entropy in fixed bins: bin i covers [$entropy_edges[i], $entropy_edges[i+1]);
-- the first bin is open below and the last open above.
with

scored as (

    select pair, generator, entropy_base, js, js > $tau as is_divergent from tokens

),

edges as (

    select
        generate_subscripts($entropy_edges, 1) as bin_index,
        unnest($entropy_edges)::double as entropy_lo

),

bins as (

    select
        bin_index,
        entropy_lo,
        lead(entropy_lo) over (order by bin_index) as entropy_hi,
        case when bin_index = 1 then '-infinity'::double else entropy_lo end as match_lo,
        coalesce(lead(entropy_lo) over (order by bin_index), 'infinity'::double) as match_hi
    from edges

),

binned as (

    select
        scored.pair,
        scored.generator,
        bins.bin_index,
        bins.entropy_lo,
        bins.entropy_hi,
        scored.js,
        scored.is_divergent
    from scored
    inner join bins
        on scored.entropy_base >= bins.match_lo and scored.entropy_base < bins.match_hi

),

final as (

    select
        pair,
        generator,
        bin_index,
        any_value(entropy_lo) as entropy_lo,
        any_value(entropy_hi) as entropy_hi,
        count(*) as n_positions,
        count(*) / sum(count(*)) over (partition by pair, generator) as share_positions,
        avg(js) as mean_js,
        median(js) as median_js,
        avg(is_divergent::integer) as share_divergent
    from binned
    group by pair, generator, bin_index

)

select
    pair,
    generator,
    bin_index,
    entropy_lo,
    entropy_hi,
    n_positions,
    share_positions,
    mean_js,
    median_js,
    share_divergent
from final
order by pair, generator, bin_index
