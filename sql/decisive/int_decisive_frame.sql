-- The decisive stage's population: every position of the measured responses of pair $pair,
-- with its token-table signals and the design's record (stg_decisive_tokens). Estimates
-- weight measured positions by 1 / inclusion_prob (rlvr.decisive.estimates).
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
from stg_decisive_tokens($pair)
order by generator, prompt_id, sample_id, position
