-- The testbed's ground truth: divergence per token role (rows with a null role, i.e. user data,
-- are left out), per pair and generator.
with

scored as (

    select
        pair,
        generator,
        role,
        list_contains($decisive_roles, role) as is_decisive,
        js,
        js > $tau as is_divergent
    from tokens
    where role is not null

),

final as (

    select
        pair,
        generator,
        role,
        bool_and(is_decisive) as is_decisive,
        count(*) as n_positions,
        count(*) / sum(count(*)) over (partition by pair, generator) as share_positions,
        avg(js) as mean_js,
        median(js) as median_js,
        avg(is_divergent::integer) as share_divergent,
        count_if(is_divergent)
            / nullif(sum(count_if(is_divergent)) over (partition by pair, generator), 0)
            as share_of_divergent
    from scored
    group by pair, generator, role

)

select
    pair,
    generator,
    role,
    is_decisive,
    n_positions,
    share_positions,
    mean_js,
    median_js,
    share_divergent,
    share_of_divergent
from final
order by pair, generator, role
