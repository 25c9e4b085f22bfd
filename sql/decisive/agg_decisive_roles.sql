-- Measured decisiveness by the testbed's grammar role: per generator, role and |delta_value|
-- cut, how many measured positions are pivotal (|delta_value| >= cut, interval excluding 0),
-- and their mean |delta_value|, js and base entropy (pair $pair's token rows; null roles, as
-- on user data, form their own group).
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

measured as (

    select
        token_rows.*,
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
        measured.generator,
        coalesce(measured.role, '(none)') as role,
        cuts.pivot_cut,
        count(*) as n_positions,
        avg((
            abs(measured.delta_value) >= cuts.pivot_cut
            and (measured.delta_low > 0 or measured.delta_high < 0)
        )::integer) as share_pivotal,
        avg(abs(measured.delta_value)) as mean_abs_delta_value,
        avg(measured.js) as mean_js,
        avg(measured.entropy_base) as mean_entropy_base
    from measured
    cross join cuts
    group by measured.generator, coalesce(measured.role, '(none)'), cuts.pivot_cut

)

select
    generator,
    role,
    pivot_cut,
    n_positions,
    share_pivotal,
    mean_abs_delta_value,
    mean_js,
    mean_entropy_base
from final
order by generator, role, pivot_cut
