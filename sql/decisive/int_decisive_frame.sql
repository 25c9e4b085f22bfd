-- The decisive stage's population: every position of the measured responses of pair $pair,
-- with its token-table signals and the design's record (stratum, inclusion probability,
-- whether it was measured) and, where measured, delta_value and its interval. Estimates
-- weight measured positions by 1 / inclusion_prob (rlvr.decisive.estimates).
with

pairs as (

    select pair, base_model, tuned_model from stg_pairs where pair = $pair

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

),

final as (

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
    inner join token_rows
        on decisiveness.model = token_rows.model
        and decisiveness.prompt_id = token_rows.prompt_id
        and decisiveness.sample_id = token_rows.sample_id
        and decisiveness.position = token_rows.position

)

select
    generator,
    prompt_id,
    sample_id,
    position,
    role,
    js,
    entropy_base,
    abs_delta,
    stratum,
    inclusion_prob,
    is_measured,
    delta_value,
    delta_low,
    delta_high
from final
order by generator, prompt_id, sample_id, position
