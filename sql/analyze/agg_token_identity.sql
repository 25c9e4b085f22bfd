-- Token identity: per pair and generator, the tokens seen at least $min_token_count times,
-- ranked by mean js and by frequency; keeps the top $top_tokens of either ranking, with the
-- share of each token's occurrences that are divergent (js > $tau).
with

scored as (

    select pair, generator, token_id, token_text, js, js > $tau as is_divergent from tokens

),

per_token as (

    select
        pair,
        generator,
        token_id,
        min(token_text) as token_text,
        count(*) as n_occurrences,
        avg(js) as mean_js,
        avg(is_divergent::integer) as share_divergent
    from scored
    group by pair, generator, token_id
    having count(*) >= $min_token_count

),

ranked as (

    select
        *,
        row_number() over (
            partition by pair, generator order by mean_js desc, token_id
        ) as rank_by_mean_js,
        row_number() over (
            partition by pair, generator order by n_occurrences desc, token_id
        ) as rank_by_count
    from per_token

),

final as (

    select * from ranked
    where rank_by_mean_js <= $top_tokens or rank_by_count <= $top_tokens

)

select
    pair,
    generator,
    token_id,
    token_text,
    n_occurrences,
    mean_js,
    share_divergent,
    rank_by_mean_js,
    rank_by_count
from final
order by pair, generator, rank_by_mean_js
