-- What the companion's top-K mixing changes at the steps it is used: per (arm, rule,
-- target_budget) of the top-K arms, over their switched tokens, the mean and 95th percentile of
-- the total variation between the exact and the top-K switch distributions (after temperature
-- and top-p) and the share of steps where the two draws with the step's uniform differ.

with

switched as (
    select
        cross_tokens.arm,
        cross_tokens.rule,
        cross_tokens.target_budget,
        cross_tokens.mix_tv,
        cross_tokens.mix_differs,
    from cross_tokens
    where cross_tokens.mix_tv is not null
),

final as (
    select
        arm,
        rule,
        target_budget,
        count(*) as n_switched,
        avg(mix_tv) as mean_tv,
        quantile_cont(mix_tv, 0.95) as tv_p95,
        avg(mix_differs::integer) as share_draw_differs,
    from switched
    group by arm, rule, target_budget
)

select
    arm,
    rule,
    target_budget,
    n_switched,
    mean_tv,
    tv_p95,
    share_draw_differs,
from final
order by arm, rule, target_budget
