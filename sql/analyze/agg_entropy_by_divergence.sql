-- The converse view of entropy: base entropy of divergent (js > $tau) versus other positions.
-- "High entropy" is the top (1 - $high_entropy_quantile) of entropy_base within each pair and
-- generator (the forking-token convention: top 20%).
with

scored as (

    select pair, generator, entropy_base, js > $tau as is_divergent from tokens

),

cuts as (

    select
        pair,
        generator,
        quantile_cont(entropy_base, $high_entropy_quantile) as high_entropy_cut
    from scored
    group by pair, generator

),

final as (

    select
        scored.pair,
        scored.generator,
        scored.is_divergent,
        count(*) as n_positions,
        avg(scored.entropy_base) as mean_entropy_base,
        median(scored.entropy_base) as median_entropy_base,
        any_value(cuts.high_entropy_cut) as high_entropy_cut,
        avg((scored.entropy_base > cuts.high_entropy_cut)::integer) as share_high_entropy
    from scored
    inner join cuts
        on scored.pair = cuts.pair and scored.generator = cuts.generator
    group by scored.pair, scored.generator, scored.is_divergent

)

select
    pair,
    generator,
    is_divergent,
    n_positions,
    mean_entropy_base,
    median_entropy_base,
    high_entropy_cut,
    share_high_entropy
from final
order by pair, generator, is_divergent
