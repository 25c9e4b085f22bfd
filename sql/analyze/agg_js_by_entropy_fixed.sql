-- js by base-model entropy in fixed bins: bin i covers [$entropy_edges[i], $entropy_edges[i+1]);
-- the first bin is open below and the last open above.
select
    pair,
    generator,
    bin_index,
    $entropy_edges[bin_index]::double as entropy_lo,
    $entropy_edges[bin_index + 1]::double as entropy_hi,
    n_positions,
    n_positions / sum(n_positions) over (partition by pair, generator) as share_positions,
    mean_js,
    median_js,
    share_divergent
from stg_js_by_bin('entropy_fixed', $tau, edges := $entropy_edges)
order by pair, generator, bin_index
