-- message_remove: delete waiting message $1 outright (an operator's decision:
-- a consumer holding it gets not_found when it settles). Returns the id.
DELETE FROM :"schema".messages WHERE id = $1 RETURNING id
