-- Concentration of the divergence mass, per pair and generator (RRTokenIntervention reports a
-- Gini coefficient of 0.936 with ~1-8% of tokens carrying the mass): the Gini coefficient of
-- js over positions and, for each share q of the total js mass in $mass_shares, the smallest
-- share of positions that holds it (the positions of highest js first). With positions ranked
-- r = 1..n from the highest js, Gini = (n + 1 - 2 * sum(r * js) / sum(js)) / n, the discrete
-- Lorenz-curve formula; tied js values give the same sums in any order. RL-checkpoint pairs are
-- left out (they have their own analysis).
with

ranked as (

    select
        pair,
        generator,
        js,
        row_number() over descending as rank_desc,
        sum(js) over (descending rows between unbounded preceding and current row)
            as mass_at_or_above,
        sum(js) over (partition by pair, generator) as total_js,
        count(*) over (partition by pair, generator) as n_positions
    from stg_pair_js
    window descending as (partition by pair, generator order by js desc)

),

totals as (

    select
        pair,
        generator,
        any_value(n_positions) as n_positions,
        any_value(total_js) as total_js,
        (any_value(n_positions) + 1 - 2 * sum(rank_desc * js) / nullif(any_value(total_js), 0))
        / any_value(n_positions) as gini
    from ranked
    group by pair, generator

),

mass_shares as (

    select unnest($mass_shares)::double as mass_share

),

holding as (

    -- the first position whose running mass reaches q x total: one filter pass, no join
    select
        ranked.pair,
        ranked.generator,
        mass_shares.mass_share,
        min(ranked.rank_desc) as n_holding
    from ranked
    cross join mass_shares
    where ranked.mass_at_or_above >= mass_shares.mass_share * ranked.total_js
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
