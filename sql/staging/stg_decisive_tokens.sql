-- Macro stg_decisive_tokens(pair_name): the decisive stage's population joined to the token
-- table: every position the design recorded for the responses of pair `pair_name` (both
-- generators; a generator's model is the pair's base or tuned model), with its token-table
-- signals and the design's record (stratum, inclusion probability, whether it was measured)
-- and, where measured, delta_value and its interval.
with

pairs as (

    select pair, base_model, tuned_model from stg_pairs where pair = pair_name

),

token_rows as (

    select
        tokens.generator,
        tokens.prompt_id,
        tokens.sample_id,
        tokens.position,
        tokens.role,
        tokens.js,
        tokens.entropy_base,
        abs(tokens.delta_logprob) as abs_delta,
        case
            when tokens.generator = 'base' then pairs.base_model else pairs.tuned_model
        end as model
    from tokens
    inner join pairs on tokens.pair = pairs.pair

)

select
    token_rows.generator,
    token_rows.prompt_id,
    token_rows.sample_id,
    token_rows.position,
    token_rows.role,
    token_rows.js,
    token_rows.entropy_base,
    token_rows.abs_delta,
    decisiveness.stratum,
    decisiveness.inclusion_prob,
    decisiveness.status <> 'unsampled' as is_measured,
    decisiveness.delta_value,
    decisiveness.delta_low,
    decisiveness.delta_high
from decisiveness
inner join token_rows using (model, prompt_id, sample_id, position)
