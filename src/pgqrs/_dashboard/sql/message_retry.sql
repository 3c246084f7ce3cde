-- message_retry: make waiting message $1 visible now (a delayed one, or one
-- waiting for its retry backoff). A message leased by a consumer is left
-- alone: making it visible would deliver it twice. Returns the id when done.
UPDATE :"schema".messages SET visible_at = now()
WHERE id = $1 AND lease IS NULL AND visible_at > now()
RETURNING id
