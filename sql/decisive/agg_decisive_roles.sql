-- Measured decisiveness by the testbed's grammar role: per generator, role and |delta_value|
-- cut, the positions of the measured responses, how many were measured, the share pivotal
-- (|delta_value| >= cut, interval excluding 0; Horvitz-Thompson: measured pivotal positions
-- weighted by 1 / inclusion_prob over all positions of the role), and the mean |delta_value|
-- of the rolled-out ones (weighted alike), js and base entropy (pair $pair's token rows;
-- null roles, as on user data, form their own group).
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
        case
            when tokens.generator = 'base' then pairs.base_model else pairs.tuned_model
        end as model
    from tokens
    inner join pairs on tokens.pair = pairs.pair

),

population as (

    select
        token_rows.*,
        decisiveness.status <> 'unsampled' as is_measured,
        1 / decisiveness.inclusion_prob as weight,
        decisiveness.delta_value,
        decisiveness.delta_low,
        decisiveness.delta_high
    from decisiveness
    inner join token_rows
        on decisiveness.model = token_rows.model
        and decisiveness.prompt_id = token_rows.prompt_id
        and decisiveness.sample_id = token_rows.sample_id
        and decisiveness.position = token_rows.position

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
