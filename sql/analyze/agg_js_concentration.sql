-- Concentration of the divergence mass, per pair and generator (RRTokenIntervention reports a
-- Gini coefficient of 0.936 with ~1-8% of tokens carrying the mass): the Gini coefficient of
-- js over positions and, for each share q of the total js mass in $mass_shares, the smallest
-- share of positions that holds it (the positions of highest js first). With positions ranked
-- r = 1..n from the highest js, Gini = (n + 1 - 2 * sum(r * js) / sum(js)) / n, the discrete
-- Lorenz-curve formula; tied js values give the same sums in any order.
with

scored as (

    select pair, generator, js::double as js from tokens

),

ranked as (

    select
        pair,
        generator,
        js,
        row_number() over (partition by pair, generator order by js desc) as rank_desc,
        sum(js) over (
            partition by pair, generator order by js desc
            rows between unbounded preceding and current row
        ) as mass_at_or_above
    from scored

),

totals as (

    select
        pair,
        generator,
        count(*) as n_positions,
        sum(js) as total_js,
        (count(*) + 1 - 2 * sum(rank_desc * js) / nullif(sum(js), 0)) / count(*) as gini
    from ranked
    group by pair, generator

),

mass_shares as (

    select unnest($mass_shares)::double as mass_share

),

holding as (

    select
        ranked.pair,
        ranked.generator,
        mass_shares.mass_share,
        min(ranked.rank_desc) as n_holding
    from ranked
    inner join totals
        on ranked.pair = totals.pair and ranked.generator = totals.generator
    cross join mass_shares
    where ranked.mass_at_or_above >= mass_shares.mass_share * totals.total_js
    group by ranked.pair, ranked.generator, mass_shares.mass_share

),

final as (

    select
        totals.pair,
        totals.generator,
        totals.n_positions,
        totals.total_js,
        totals.gini,
        holding.mass_share,
        holding.n_holding,
        holding.n_holding / totals.n_positions as share_positions
    from totals
    inner join holding
        on totals.pair = holding.pair and totals.generator = holding.generator

)

select
    pair,
    generator,
    n_positions,
    total_js,
    gini,
    mass_share,
    n_holding,
    share_positions
from final
order by pair, generator, mass_share
