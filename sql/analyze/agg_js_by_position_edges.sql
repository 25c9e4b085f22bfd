-- js at the first and last $n_edge_positions absolute positions of each response: anchor
-- 'start' counts offset from the first token, 'end' from the last (offset 0 = last token).
with

scored as (

    select pair, generator, position, n_tokens, js, js > $tau as is_divergent from tokens

),

anchored as (

    select pair, generator, 'start' as anchor, position as token_offset, js, is_divergent
    from scored
    where position < $n_edge_positions

    union all

    select
        pair, generator, 'end' as anchor, n_tokens - 1 - position as token_offset, js, is_divergent
    from scored
    where n_tokens - 1 - position < $n_edge_positions

),

final as (

    select
        pair,
        generator,
        anchor,
        token_offset,
        count(*) as n_positions,
        avg(js) as mean_js,
        median(js) as median_js,
        avg(is_divergent::integer) as share_divergent
    from anchored
    group by pair, generator, anchor, token_offset

)

select
    pair,
    generator,
    anchor,
    token_offset,
    n_positions,
    mean_js,
    median_js,
    share_divergent
from final
order by pair, generator, anchor desc, token_offset
