-- Cross-sampling outcomes per prompt, the bootstrap's clusters: one row per (arm, rule,
-- target_budget, prompt_id) with its responses' correct count and number (seeds pooled), and
-- the prompt's 0-based index within its cell in prompt_id order.
select
    arm,
    rule,
    target_budget,
    prompt_id,
    sum(reward) as n_correct,
    count(*) as n_responses,
    row_number() over (partition by arm, rule, target_budget order by prompt_id) - 1
        as prompt_index
from cross_samples
group by arm, rule, target_budget, prompt_id
