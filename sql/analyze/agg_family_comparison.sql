-- RL versus SFT versus RFT side by side: sparsity, concentration and position summaries per
-- pair whose tuned model is rl, sft or rft, for both generators. `top_decile_js_mass` is the
-- share of all js carried by positions at or above the 90th js percentile (higher = the shift
-- sits in fewer positions); `share_responses_with_divergent` how many responses have any
-- position with js > $tau (lower with the same mass = sparser).
with

pairs as (

    select pair, tuned_kind from stg_pairs where tuned_kind in ('rl', 'sft', 'rft')

),

scored as (

    select
        tokens.pair,
        tokens.generator,
        tokens.prompt_id,
        tokens.sample_id,
        tokens.js,
        least(
            floor(tokens.position * $n_position_bins / tokens.n_tokens)::integer,
            $n_position_bins - 1
        ) as position_bin
    from tokens
    inner join pairs on tokens.pair = pairs.pair

),

position_stats as (

    select
        pair,
        generator,
        count(*) as n_positions,
        avg(js) as mean_js,
        median(js) as median_js,
        quantile_cont(js, 0.9) as js_p90,
        quantile_cont(js, 0.99) as js_p99,
        avg((js > 0.01)::integer) as share_above_001,
        avg((js > $tau)::integer) as share_divergent,
        avg(js) filter (where position_bin = 0) as mean_js_first_bin,
        avg(js) filter (where position_bin > 0 and position_bin < $n_position_bins - 1)
            as mean_js_middle_bins,
        avg(js) filter (where position_bin = $n_position_bins - 1) as mean_js_last_bin
    from scored
    group by pair, generator

),

mass as (

    select
        scored.pair,
        scored.generator,
        sum(scored.js) filter (where scored.js >= position_stats.js_p90)
            / nullif(sum(scored.js), 0) as top_decile_js_mass
    from scored
    inner join position_stats
        on scored.pair = position_stats.pair and scored.generator = position_stats.generator
    group by scored.pair, scored.generator

),

per_response as (

    select pair, generator, prompt_id, sample_id, max(js) > $tau as has_divergent
    from scored
    group by pair, generator, prompt_id, sample_id

),

response_stats as (

    select
        pair,
        generator,
        count(*) as n_responses,
        avg(has_divergent::integer) as share_responses_with_divergent
    from per_response
    group by pair, generator

),

final as (

    select
        position_stats.*,
        pairs.tuned_kind,
        mass.top_decile_js_mass,
        response_stats.n_responses,
        response_stats.share_responses_with_divergent
    from position_stats
    inner join pairs on position_stats.pair = pairs.pair
    inner join mass
        on position_stats.pair = mass.pair and position_stats.generator = mass.generator
    inner join response_stats
        on position_stats.pair = response_stats.pair
        and position_stats.generator = response_stats.generator

)

select
    pair,
    tuned_kind,
    generator,
    n_responses,
    n_positions,
    mean_js,
    median_js,
    js_p99,
    share_above_001,
    share_divergent,
    top_decile_js_mass,
    share_responses_with_divergent,
    mean_js_first_bin,
    mean_js_middle_bins,
    mean_js_last_bin
from final
order by tuned_kind, generator
