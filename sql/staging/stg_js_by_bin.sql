-- Macro stg_js_by_bin(binning, tau, n_bins := 1, edges := [0.0]): js per bin of the token rows
-- of each pair and generator, one row per (pair, generator, bin_index) that holds a token:
-- n_positions, mean and median js, the share divergent (js > tau) and the bin's smallest and
-- largest base entropy. `binning` (a literal; the other binnings are pruned when planned):
--   'entropy_fixed'     base entropy, bin i covers [edges[i], edges[i+1]); the first is open
--                       below and the last open above
--   'entropy_quantile'  base entropy in n_bins equal-count bins per pair and generator: edges
--                       are the quantiles k / n_bins, bin i holds the entropies above i - 1 edges
--                       and at most the i-th, so tied entropies share a bin (ntile would split
--                       ties arbitrarily and make reruns differ)
--   'position'          normalised position: bin = floor(position / n_tokens * n_bins), 0-based
--                       (bin 0 is the start of the response, the last bin its end)
with

scored as (

    select pair, generator, position, n_tokens, entropy_base, js, js > tau as is_divergent
    from tokens

),

fixed_edges as (

    select
        generate_subscripts(edges, 1) as bin_index,
        unnest(edges)::double as entropy_lo

),

fixed_bins as (

    select
        bin_index,
        case when bin_index = 1 then '-infinity'::double else entropy_lo end as match_lo,
        coalesce(lead(entropy_lo) over (order by bin_index), 'infinity'::double) as match_hi
    from fixed_edges

),

quantile_cuts as (

    select
        pair,
        generator,
        quantile_cont(entropy_base, [k / n_bins for k in range(1, n_bins)]) as entropy_edges
    from scored
    where binning = 'entropy_quantile'
    group by pair, generator

),

binned as (

    select
        scored.pair,
        scored.generator,
        fixed_bins.bin_index,
        scored.entropy_base,
        scored.js,
        scored.is_divergent
    from scored
    inner join fixed_bins
        on scored.entropy_base >= fixed_bins.match_lo and scored.entropy_base < fixed_bins.match_hi
    where binning = 'entropy_fixed'

    union all

    select
        scored.pair,
        scored.generator,
        1 + len(list_filter(quantile_cuts.entropy_edges, lambda e: e < scored.entropy_base))
            as bin_index,
        scored.entropy_base,
        scored.js,
        scored.is_divergent
    from scored
    inner join quantile_cuts
        on scored.pair = quantile_cuts.pair and scored.generator = quantile_cuts.generator
    where binning = 'entropy_quantile'

    union all

    select
        pair,
        generator,
        least(floor(position * n_bins / n_tokens)::integer, n_bins - 1) as bin_index,
        entropy_base,
        js,
        is_divergent
    from scored
    where binning = 'position'

)

select
    pair,
    generator,
    bin_index,
    count(*) as n_positions,
    min(entropy_base) as entropy_min,
    max(entropy_base) as entropy_max,
    avg(js) as mean_js,
    median(js) as median_js,
    avg(is_divergent::integer) as share_divergent
from binned
group by pair, generator, bin_index
