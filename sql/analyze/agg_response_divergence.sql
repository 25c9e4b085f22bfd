-- One row per scored response: its reward and response-level summaries of js over its
-- positions (max, mean, and the mean over its first $first_tokens positions), the inputs of
-- failure prediction (`rlvr.tokens.prediction`: how well each summary ranks failed responses
-- above correct ones). RL-checkpoint pairs are left out (they have their own analysis).
with

pairs as (

    select pair from stg_pairs where tuned_kind != 'checkpoint'

),

scored as (

    select
        tokens.pair,
        tokens.generator,
        tokens.prompt_id,
        tokens.sample_id,
        tokens.position,
        tokens.reward,
        tokens.js::double as js
    from tokens
    inner join pairs on tokens.pair = pairs.pair

),

final as (

    select
        pair,
        generator,
        prompt_id,
        sample_id,
        any_value(reward) as reward,
        count(*) as n_positions,
        max(js) as max_js,
        avg(js) as mean_js,
        avg(js) filter (where position < $first_tokens) as mean_js_first
    from scored
    group by pair, generator, prompt_id, sample_id

)

select
    pair,
    generator,
    prompt_id,
    sample_id,
    reward,
    n_positions,
    max_js,
    mean_js,
    mean_js_first
from final
order by pair, generator, prompt_id, sample_id
