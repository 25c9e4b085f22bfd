-- js by normalised position: bin = floor(position / n_tokens * $n_position_bins), per pair and
-- generator (bin 0 is the start of the response, the last bin its end).
with

scored as (

    select pair, generator, position, n_tokens, js, js > $tau as is_divergent from tokens

),

binned as (

    select
        pair,
        generator,
        least(
            floor(position * $n_position_bins / n_tokens)::integer, $n_position_bins - 1
        ) as bin_index,
        js,
        is_divergent
    from scored

),

final as (

    select
        pair,
        generator,
        bin_index,
        bin_index / $n_position_bins as position_lo,
        (bin_index + 1) / $n_position_bins as position_hi,
        count(*) as n_positions,
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
    position_lo,
    position_hi,
    n_positions,
    mean_js,
    median_js,
    share_divergent
from final
order by pair, generator, bin_index
