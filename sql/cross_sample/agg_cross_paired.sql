-- Paired accuracy differences between cells of the sweep: each row of `cross_comparisons`
-- (`rlvr.cross.budgets.comparisons`) names a cell (arm, rule, target_budget), its reference cell
-- and the kind of comparison (minus_random: a rule minus random at the same budget; minus_primary:
-- minus the arm's primary alone; minus_tuned: minus the tuned model alone; minus_exact: the
-- companion's top-K shortcut minus the exact arm's js cell). The difference of the two accuracies
-- gets a paired prompt-cluster bootstrap interval: replicate b draws n_prompts of the prompts the
-- two cells share with replacement (stg_bootstrap_draws) and scores both on the same
-- drawn prompts, so the difficulty they share cancels; seeds are pooled within a prompt (cells of
-- one seed also share their token streams).
-- Params: $n_bootstrap (replicates), $alpha (two-sided, e.g. 0.05), $bootstrap_seed.

with

samples as (
    select
        cross_samples.arm,
        cross_samples.rule,
        cross_samples.target_budget,
        cross_samples.prompt_id,
        cross_samples.reward,
        cross_samples.n_switched / cross_samples.n_tokens as switch_share,
    from cross_samples
),

cells as (
    select
        arm,
        rule,
        target_budget,
        avg(reward) as accuracy,
        avg(switch_share) as budget_share,
    from samples
    group by arm, rule, target_budget
),

prompt_pairs as (
    select
        cross_comparisons.comparison,
        cross_comparisons.arm,
        cross_comparisons.rule,
        cross_comparisons.target_budget,
        cross_comparisons.reference_arm,
        cross_comparisons.reference_rule,
        cross_comparisons.reference_budget,
        cell_prompts.n_correct as n_correct_cell,
        cell_prompts.n_responses as n_cell,
        reference_prompts.n_correct as n_correct_reference,
        reference_prompts.n_responses as n_reference,
        row_number() over (
            partition by
                cross_comparisons.comparison,
                cross_comparisons.arm,
                cross_comparisons.rule,
                cross_comparisons.target_budget
            order by cell_prompts.prompt_id
        ) - 1 as prompt_index,
    from cross_comparisons
    inner join stg_cross_prompts as cell_prompts
        on
            cross_comparisons.arm = cell_prompts.arm
            and cross_comparisons.rule = cell_prompts.rule
            and cross_comparisons.target_budget = cell_prompts.target_budget
    inner join stg_cross_prompts as reference_prompts
        on
            cross_comparisons.reference_arm = reference_prompts.arm
            and cross_comparisons.reference_rule = reference_prompts.rule
            and cross_comparisons.reference_budget = reference_prompts.target_budget
            and cell_prompts.prompt_id = reference_prompts.prompt_id
),

pairs as (
    select
        comparison,
        arm,
        rule,
        target_budget,
        any_value(reference_arm) as reference_arm,
        any_value(reference_rule) as reference_rule,
        any_value(reference_budget) as reference_budget,
        count(*) as n_prompts,
    from prompt_pairs
    group by comparison, arm, rule, target_budget
),

draws as (
    select
        pairs.comparison,
        pairs.arm,
        pairs.rule,
        pairs.target_budget,
        replicates.b,
        replicates.prompt_index,
    from pairs,
        lateral stg_bootstrap_draws(pairs.n_prompts, $n_bootstrap, $bootstrap_seed) as replicates
),

replicate_diff as (
    select
        draws.comparison,
        draws.arm,
        draws.rule,
        draws.target_budget,
        draws.b,
        sum(prompt_pairs.n_correct_cell) / sum(prompt_pairs.n_cell)
        - sum(prompt_pairs.n_correct_reference) / sum(prompt_pairs.n_reference) as diff,
    from draws
    inner join prompt_pairs
        on
            draws.comparison = prompt_pairs.comparison
            and draws.arm = prompt_pairs.arm
            and draws.rule = prompt_pairs.rule
            and draws.target_budget = prompt_pairs.target_budget
            and draws.prompt_index = prompt_pairs.prompt_index
    group by draws.comparison, draws.arm, draws.rule, draws.target_budget, draws.b
),

intervals as (
    select
        comparison,
        arm,
        rule,
        target_budget,
        quantile_cont(diff, $alpha / 2) as diff_low,
        quantile_cont(diff, 1 - $alpha / 2) as diff_high,
    from replicate_diff
    group by comparison, arm, rule, target_budget
),

final as (
    select
        pairs.comparison,
        pairs.arm,
        pairs.rule,
        pairs.target_budget,
        pairs.reference_arm,
        pairs.reference_rule,
        pairs.reference_budget,
        pairs.n_prompts,
        cell_stats.budget_share as budget_cell,
        reference_stats.budget_share as budget_reference,
        cell_stats.accuracy as accuracy_cell,
        reference_stats.accuracy as accuracy_reference,
        cell_stats.accuracy - reference_stats.accuracy as diff,
        intervals.diff_low,
        intervals.diff_high,
    from pairs
    inner join cells as cell_stats
        on
            pairs.arm = cell_stats.arm
            and pairs.rule = cell_stats.rule
            and pairs.target_budget = cell_stats.target_budget
    inner join cells as reference_stats
        on
            pairs.reference_arm = reference_stats.arm
            and pairs.reference_rule = reference_stats.rule
            and pairs.reference_budget = reference_stats.target_budget
    inner join intervals
        on
            pairs.comparison = intervals.comparison
            and pairs.arm = intervals.arm
            and pairs.rule = intervals.rule
            and pairs.target_budget = intervals.target_budget
)

select
    comparison,
    arm,
    rule,
    target_budget,
    reference_arm,
    reference_rule,
    reference_budget,
    n_prompts,
    budget_cell,
    budget_reference,
    accuracy_cell,
    accuracy_reference,
    diff,
    diff_low,
    diff_high,
from final
order by comparison, arm, target_budget, rule
