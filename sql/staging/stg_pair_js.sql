-- The JS of every scored position of the final pairs (RL checkpoints left out: they have their
-- own analysis), as double: what the concentration and Lorenz queries rank.
with

final_pairs as (

    select pair from stg_pairs where tuned_kind != 'checkpoint'

)

select
    tokens.pair,
    tokens.generator,
    tokens.js::double as js
from tokens
inner join final_pairs on tokens.pair = final_pairs.pair
