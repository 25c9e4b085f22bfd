-- js by normalised position: bin = floor(position / n_tokens * $n_position_bins), per pair and
-- generator (bin 0 is the start of the response, the last bin its end).
select
    pair,
    generator,
    bin_index::integer as bin_index,
    bin_index / $n_position_bins as position_lo,
    (bin_index + 1) / $n_position_bins as position_hi,
    n_positions,
    mean_js,
    median_js,
    share_divergent
from stg_js_by_bin('position', $tau, n_bins := $n_position_bins)
order by pair, generator, bin_index
