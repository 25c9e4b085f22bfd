-- Accuracy against effective budget: one row per (direction, rule, threshold), pooled over seeds.
-- Budget = tokens drawn from the intervention model per response (mean share and mean count).
-- CI: prompt-cluster bootstrap; replicate b draws n_prompts prompts with replacement using
-- hash($bootstrap_seed, b, j), the same draws for every cell (a paired bootstrap).
-- Params: $n_bootstrap (replicates), $alpha (two-sided, e.g. 0.05), $bootstrap_seed.

with

samples as (
    select
        cross_samples.direction,
        cross_samples.rule,
        cross_samples.threshold,
        cross_samples.matched_threshold,
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
        direction,
        rule,
        threshold,
        any_value(matched_threshold) as matched_threshold,
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
    group by direction, rule, threshold
),

by_seed as (
    select
        direction,
        rule,
        threshold,
        seed,
        avg(reward) as accuracy,
    from samples
    group by direction, rule, threshold, seed
),

seed_spread as (
    select
        direction,
        rule,
        threshold,
        coalesce(stddev_samp(accuracy), 0) as accuracy_seed_std,
    from by_seed
    group by direction, rule, threshold
),

by_prompt as (
    select
        direction,
        rule,
        threshold,
        prompt_id,
        sum(reward) as n_correct,
        count(*) as n_responses,
        row_number() over (
            partition by direction, rule, threshold order by prompt_id
        ) - 1 as prompt_index,
    from samples
    group by direction, rule, threshold, prompt_id
),

draws as (
    select
        cells.direction,
        cells.rule,
        cells.threshold,
        replicates.b,
        hash($bootstrap_seed, replicates.b, unnest(range(cells.n_prompts))) % cells.n_prompts
            as prompt_index,
    from cells
    cross join range($n_bootstrap) as replicates (b)
),

replicate_accuracy as (
    select
        draws.direction,
        draws.rule,
        draws.threshold,
        draws.b,
        sum(by_prompt.n_correct) / sum(by_prompt.n_responses) as accuracy,
    from draws
    inner join by_prompt
        on
            draws.direction = by_prompt.direction
            and draws.rule = by_prompt.rule
            and draws.threshold = by_prompt.threshold
            and draws.prompt_index = by_prompt.prompt_index
    group by draws.direction, draws.rule, draws.threshold, draws.b
),

intervals as (
    select
        direction,
        rule,
        threshold,
        quantile_cont(accuracy, $alpha / 2) as accuracy_low,
        quantile_cont(accuracy, 1 - $alpha / 2) as accuracy_high,
    from replicate_accuracy
    group by direction, rule, threshold
),

final as (
    select
        cells.direction,
        cells.rule,
        cells.threshold,
        cells.matched_threshold,
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
            cells.direction = intervals.direction
            and cells.rule = intervals.rule
            and cells.threshold = intervals.threshold
    inner join seed_spread
        on
            cells.direction = seed_spread.direction
            and cells.rule = seed_spread.rule
            and cells.threshold = seed_spread.threshold
)

select
    direction,
    rule,
    threshold,
    matched_threshold,
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
order by direction, rule, budget_share, threshold
