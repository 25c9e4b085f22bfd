-- js by base-model entropy in $n_entropy_bins equal-count bins per pair and generator (edges:
-- the entropy quantiles k / $n_entropy_bins; tied entropies share a bin, see stg_js_by_bin),
-- each bin with the smallest and largest entropy it holds.
select
    pair,
    generator,
    bin_index,
    entropy_min as entropy_lo,
    entropy_max as entropy_hi,
    n_positions,
    mean_js,
    median_js,
    share_divergent
from stg_js_by_bin('entropy_quantile', $tau, n_bins := $n_entropy_bins)
order by pair, generator, bin_index
