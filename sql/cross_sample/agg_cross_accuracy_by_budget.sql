-- Accuracy against achieved budget: one row per (arm, rule, target_budget), seeds pooled; an arm
-- is a direction and its switch distribution (`rlvr.cross.sweep`).
-- Budget = tokens drawn from the intervention model per response: the mean over responses of
-- the share (budget_share, the measure calibration targets) and of the count; the token-pooled
-- share is given beside it. Rules `none` / `all` are the budget-0 / budget-1 endpoints.
-- CI: prompt-cluster bootstrap (stg_bootstrap_draws over stg_cross_prompts); replicate b draws
-- n_prompts prompts with replacement, the same draws for every cell (a paired bootstrap).
-- Params: $n_bootstrap (replicates), $alpha (two-sided, e.g. 0.05), $bootstrap_seed.

with

samples as (
    select
        cross_samples.arm,
        cross_samples.direction,
        cross_samples.alpha,
        cross_samples.top_k,
        cross_samples.rule,
        cross_samples.target_budget,
        cross_samples.calibration_round,
        cross_samples.threshold,
        cross_samples.matched_rule,
        cross_samples.primary_model,
        cross_samples.intervention_model,
        cross_samples.seed,
        cross_samples.prompt_id,
        cross_samples.reward,
        cross_samples.n_tokens,
        cross_samples.n_switched,
        cross_samples.n_switched / cross_samples.n_tokens as switch_share,
    from cross_samples
),

cells as (
    select
        arm,
        any_value(direction) as direction,
        any_value(alpha) as alpha,
        any_value(top_k) as top_k,
        rule,
        target_budget,
        max(calibration_round) as calibration_round,
        avg(threshold) as threshold,
        any_value(matched_rule) as matched_rule,
        any_value(primary_model) as primary_model,
        any_value(intervention_model) as intervention_model,
        count(distinct seed) as n_seeds,
        count(distinct prompt_id) as n_prompts,
        count(*) as n_responses,
        avg(reward) as accuracy,
        avg(switch_share) as budget_share,
        sum(n_switched) / sum(n_tokens) as budget_share_pooled,
        avg(n_switched) as budget_tokens,
        avg(n_tokens) as mean_tokens,
    from samples
    group by arm, rule, target_budget
),

by_seed as (
    select
        arm,
        rule,
        target_budget,
        seed,
        avg(reward) as accuracy,
    from samples
    group by arm, rule, target_budget, seed
),

seed_spread as (
    select
        arm,
        rule,
        target_budget,
        coalesce(stddev_samp(accuracy), 0) as accuracy_seed_std,
    from by_seed
    group by arm, rule, target_budget
),

draws as (
    select
        cells.arm,
        cells.rule,
        cells.target_budget,
        replicates.b,
        replicates.prompt_index,
    from cells,
        lateral stg_bootstrap_draws(cells.n_prompts, $n_bootstrap, $bootstrap_seed) as replicates
),

replicate_accuracy as (
    select
        draws.arm,
        draws.rule,
        draws.target_budget,
        draws.b,
        sum(by_prompt.n_correct) / sum(by_prompt.n_responses) as accuracy,
    from draws
    inner join stg_cross_prompts as by_prompt
        on
            draws.arm = by_prompt.arm
            and draws.rule = by_prompt.rule
            and draws.target_budget = by_prompt.target_budget
            and draws.prompt_index = by_prompt.prompt_index
    group by draws.arm, draws.rule, draws.target_budget, draws.b
),

intervals as (
    select
        arm,
        rule,
        target_budget,
        quantile_cont(accuracy, $alpha / 2) as accuracy_low,
        quantile_cont(accuracy, 1 - $alpha / 2) as accuracy_high,
    from replicate_accuracy
    group by arm, rule, target_budget
),

final as (
    select
        cells.arm,
        cells.direction,
        cells.alpha,
        cells.top_k,
        cells.rule,
        cells.target_budget,
        cells.calibration_round,
        cells.threshold,
        cells.matched_rule,
        cells.primary_model,
        cells.intervention_model,
        cells.n_seeds,
        cells.n_prompts,
        cells.n_responses,
        cells.budget_share,
        cells.budget_share_pooled,
        cells.budget_tokens,
        cells.mean_tokens,
        cells.accuracy,
        intervals.accuracy_low,
        intervals.accuracy_high,
        seed_spread.accuracy_seed_std,
    from cells
    inner join intervals
        on
            cells.arm = intervals.arm
            and cells.rule = intervals.rule
            and cells.target_budget = intervals.target_budget
    inner join seed_spread
        on
            cells.arm = seed_spread.arm
            and cells.rule = seed_spread.rule
            and cells.target_budget = seed_spread.target_budget
)

select
    arm,
    direction,
    alpha,
    top_k,
    rule,
    target_budget,
    calibration_round,
    threshold,
    matched_rule,
    primary_model,
    intervention_model,
    n_seeds,
    n_prompts,
    n_responses,
    budget_share,
    budget_share_pooled,
    budget_tokens,
    mean_tokens,
    accuracy,
    accuracy_low,
    accuracy_high,
    accuracy_seed_std,
from final
order by arm, rule, target_budget
