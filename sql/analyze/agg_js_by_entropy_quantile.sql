-- js by base-model entropy in $n_entropy_bins equal-count bins per pair and generator. Bin edges
-- are the entropy quantiles k / $n_entropy_bins; bin i holds the entropies above i - 1 edges and
-- at most the i-th, so tied entropies always share a bin (ntile would split ties arbitrarily and
-- make reruns differ).
with

scored as (

    select pair, generator, entropy_base, js, js > $tau as is_divergent from tokens

),

cuts as (

    select
        pair,
        generator,
        quantile_cont(
            entropy_base,
            [k / $n_entropy_bins for k in range(1, $n_entropy_bins)]
        ) as entropy_edges
    from scored
    group by pair, generator

),

binned as (

    select
        scored.pair,
        scored.generator,
        scored.entropy_base,
        scored.js,
        scored.is_divergent,
        1 + len(list_filter(cuts.entropy_edges, lambda e: e < scored.entropy_base)) as bin_index
    from scored
    inner join cuts on scored.pair = cuts.pair and scored.generator = cuts.generator

),

final as (

    select
        pair,
        generator,
        bin_index,
        min(entropy_base) as entropy_lo,
        max(entropy_base) as entropy_hi,
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
    entropy_lo,
    entropy_hi,
    n_positions,
    mean_js,
    median_js,
    share_divergent
from final
order by pair, generator, bin_index
