-- Evolution over RL checkpoints on a fixed set of responses: the base model's responses
-- (generator 'base'), scored against every RL checkpoint (tuned_kind 'checkpoint', pairs
-- `<base>__rl_step_<N>`) and the final RL model ($final_pair). Per checkpoint: js percentiles,
-- and the Jaccard overlap of its divergent positions (js > $tau) with the final model's on the
-- same positions.
with

pairs as (

    select pair, rl_step from stg_pairs
    where tuned_kind = 'checkpoint' or pair = $final_pair

),

scored as (

    select tokens.pair, tokens.prompt_id, tokens.sample_id, tokens.position, tokens.js
    from tokens
    inner join pairs on tokens.pair = pairs.pair
    where tokens.generator = 'base'

),

final_model as (

    select prompt_id, sample_id, position, js > $tau as is_divergent_final
    from scored
    where pair = $final_pair

),

joined as (

    select
        scored.pair,
        scored.js,
        scored.js > $tau as is_divergent,
        final_model.is_divergent_final
    from scored
    inner join final_model
        on scored.prompt_id = final_model.prompt_id
        and scored.sample_id = final_model.sample_id
        and scored.position = final_model.position

),

per_pair as (

    select
        pair,
        count(*) as n_positions,
        avg(js) as mean_js,
        quantile_cont(js, [0.5, 0.9, 0.95, 0.99]) as js_values,
        avg(is_divergent::integer) as share_divergent,
        count_if(is_divergent and is_divergent_final) as n_both,
        count_if(is_divergent or is_divergent_final) as n_either
    from joined
    group by pair

),

final as (

    select
        per_pair.pair,
        pairs.rl_step,
        per_pair.pair = $final_pair as is_final,
        per_pair.n_positions,
        per_pair.mean_js,
        per_pair.js_values[1] as js_p50,
        per_pair.js_values[2] as js_p90,
        per_pair.js_values[3] as js_p95,
        per_pair.js_values[4] as js_p99,
        per_pair.share_divergent,
        -- two empty divergent sets are identical: Jaccard 1
        coalesce(per_pair.n_both / nullif(per_pair.n_either, 0), 1.0) as jaccard_with_final
    from per_pair
    inner join pairs on per_pair.pair = pairs.pair

)

select
    pair,
    rl_step,
    is_final,
    n_positions,
    mean_js,
    js_p50,
    js_p90,
    js_p95,
    js_p99,
    share_divergent,
    jaccard_with_final
from final
order by is_final, rl_step
