-- The full js distribution as a histogram with log-spaced bins ($hist_bins_per_decade per
-- decade); values below $hist_min (exact zeros included) fall into the lowest bin.
with

scored as (

    select pair, generator, js from tokens

),

binned as (

    select
        pair,
        generator,
        floor(log10(greatest(js, $hist_min)) * $hist_bins_per_decade)::integer as bin_index
    from scored

),

counted as (

    select
        pair,
        generator,
        bin_index,
        count(*) as n_positions
    from binned
    group by pair, generator, bin_index

),

final as (

    select
        pair,
        generator,
        bin_index,
        pow(10, bin_index / $hist_bins_per_decade) as js_lo,
        pow(10, (bin_index + 1) / $hist_bins_per_decade) as js_hi,
        n_positions,
        n_positions / sum(n_positions) over (partition by pair, generator) as share_positions
    from counted

)

select
    pair,
    generator,
    bin_index,
    js_lo,
    js_hi,
    n_positions,
    share_positions
from final
order by pair, generator, bin_index
