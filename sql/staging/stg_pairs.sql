-- One row per scored model pair: its base and tuned model names (pairs are `<base>__<tuned>`),
-- the tuned model's kind (rl, sft, rft, checkpoint, user) and RL step (checkpoints only).
with

scored_pairs as (

    select distinct pair, tuned_kind, rl_step from tokens

),

final as (

    select
        pair,
        split_part(pair, '__', 1) as base_model,
        split_part(pair, '__', 2) as tuned_model,
        tuned_kind,
        rl_step
    from scored_pairs

)

select
    pair,
    base_model,
    tuned_model,
    tuned_kind,
    rl_step
from final
order by pair
