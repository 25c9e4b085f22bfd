-- Measured decisiveness by the testbed's grammar role: per generator, role and |delta_value|
-- cut, the positions of the measured responses, how many were measured, the share pivotal
-- (|delta_value| >= cut, interval excluding 0; Horvitz-Thompson: measured pivotal positions
-- weighted by 1 / inclusion_prob over all positions of the role), and the mean |delta_value|
-- of the rolled-out ones (weighted alike), js and base entropy (pair $pair's token rows;
-- null roles, as on user data, form their own group).
with

population as (

    select
        generator,
        role,
        is_measured,
        1 / inclusion_prob as weight,
        delta_value,
        delta_low,
        delta_high,
        js,
        entropy_base
    from stg_decisive_tokens($pair)

),

cuts as (

    select unnest($pivot_cuts)::double as pivot_cut

),

final as (

    select
        population.generator,
        coalesce(population.role, '(none)') as role,
        cuts.pivot_cut,
        count(*) as n_positions,
        count_if(population.is_measured) as n_measured,
        sum(population.weight) filter (
            where abs(population.delta_value) >= cuts.pivot_cut
            and (population.delta_low > 0 or population.delta_high < 0)
        ) as weighted_pivotal,
        sum(population.weight * abs(population.delta_value))
        / sum(population.weight) filter (where population.delta_value is not null)
            as mean_abs_delta_value,
        avg(population.js) as mean_js,
        avg(population.entropy_base) as mean_entropy_base
    from population
    cross join cuts
    group by population.generator, coalesce(population.role, '(none)'), cuts.pivot_cut

)

select
    generator,
    role,
    pivot_cut,
    n_positions,
    n_measured,
    coalesce(weighted_pivotal, 0) / n_positions as share_pivotal,
    mean_abs_delta_value,
    mean_js,
    mean_entropy_base
from final
order by generator, role, pivot_cut
