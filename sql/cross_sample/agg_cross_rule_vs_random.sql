-- Each rule minus the random control at the same target budget: accuracy difference with a
-- paired prompt-cluster bootstrap interval. Replicate b draws n_prompts prompts with
-- replacement using hash($bootstrap_seed, b, j) and scores the rule and random on the same
-- drawn prompts, so the difficulty they share cancels; seeds are pooled within a prompt (the
-- rule and random cells of a seed also share their token streams).
-- Params: $n_bootstrap (replicates), $alpha (two-sided, e.g. 0.05), $bootstrap_seed.

with

samples as (
    select
        cross_samples.direction,
        cross_samples.rule,
        cross_samples.target_budget,
        cross_samples.prompt_id,
        cross_samples.reward,
        cross_samples.n_switched / cross_samples.n_tokens as switch_share,
    from cross_samples
    where cross_samples.rule not in ('none', 'all')
),

cells as (
    select
        direction,
        rule,
        target_budget,
        count(distinct prompt_id) as n_prompts,
        avg(reward) as accuracy,
        avg(switch_share) as budget_share,
    from samples
    group by direction, rule, target_budget
),

by_prompt as (
    select
        direction,
        rule,
        target_budget,
        prompt_id,
        sum(reward) as n_correct,
        count(*) as n_responses,
    from samples
    group by direction, rule, target_budget, prompt_id
),

prompt_pairs as (
    select
        rule_prompts.direction,
        rule_prompts.target_budget,
        rule_prompts.rule,
        rule_prompts.n_correct as n_correct_rule,
        rule_prompts.n_responses as n_rule,
        random_prompts.n_correct as n_correct_random,
        random_prompts.n_responses as n_random,
        row_number() over (
            partition by rule_prompts.direction, rule_prompts.target_budget, rule_prompts.rule
            order by rule_prompts.prompt_id
        ) - 1 as prompt_index,
    from by_prompt as rule_prompts
    inner join by_prompt as random_prompts
        on
            rule_prompts.direction = random_prompts.direction
            and rule_prompts.target_budget = random_prompts.target_budget
            and rule_prompts.prompt_id = random_prompts.prompt_id
    where rule_prompts.rule != 'random' and random_prompts.rule = 'random'
),

pairs as (
    select
        rule_cells.direction,
        rule_cells.target_budget,
        rule_cells.rule,
        rule_cells.n_prompts,
        rule_cells.budget_share as budget_rule,
        random_cells.budget_share as budget_random,
        rule_cells.accuracy as accuracy_rule,
        random_cells.accuracy as accuracy_random,
    from cells as rule_cells
    inner join cells as random_cells
        on
            rule_cells.direction = random_cells.direction
            and rule_cells.target_budget = random_cells.target_budget
            and random_cells.rule = 'random'
    where rule_cells.rule != 'random'
),

draws as (
    select
        pairs.direction,
        pairs.target_budget,
        pairs.rule,
        replicates.b,
        hash($bootstrap_seed, replicates.b, unnest(range(pairs.n_prompts))) % pairs.n_prompts
            as prompt_index,
    from pairs
    cross join range($n_bootstrap) as replicates (b)
),

replicate_diff as (
    select
        draws.direction,
        draws.target_budget,
        draws.rule,
        draws.b,
        sum(prompt_pairs.n_correct_rule) / sum(prompt_pairs.n_rule)
        - sum(prompt_pairs.n_correct_random) / sum(prompt_pairs.n_random) as diff,
    from draws
    inner join prompt_pairs
        on
            draws.direction = prompt_pairs.direction
            and draws.target_budget = prompt_pairs.target_budget
            and draws.rule = prompt_pairs.rule
            and draws.prompt_index = prompt_pairs.prompt_index
    group by draws.direction, draws.target_budget, draws.rule, draws.b
),

intervals as (
    select
        direction,
        target_budget,
        rule,
        quantile_cont(diff, $alpha / 2) as diff_low,
        quantile_cont(diff, 1 - $alpha / 2) as diff_high,
    from replicate_diff
    group by direction, target_budget, rule
),

final as (
    select
        pairs.direction,
        pairs.target_budget,
        pairs.rule,
        pairs.n_prompts,
        pairs.budget_rule,
        pairs.budget_random,
        pairs.accuracy_rule,
        pairs.accuracy_random,
        pairs.accuracy_rule - pairs.accuracy_random as diff,
        intervals.diff_low,
        intervals.diff_high,
    from pairs
    inner join intervals
        on
            pairs.direction = intervals.direction
            and pairs.target_budget = intervals.target_budget
            and pairs.rule = intervals.rule
)

select
    direction,
    target_budget,
    rule,
    n_prompts,
    budget_rule,
    budget_random,
    accuracy_rule,
    accuracy_random,
    diff,
    diff_low,
    diff_high,
from final
order by direction, target_budget, rule
