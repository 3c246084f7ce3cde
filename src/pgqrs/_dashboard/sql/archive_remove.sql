-- archive_remove: delete archived message $1. Returns the id.
DELETE FROM :"schema".archive WHERE id = $1 RETURNING id
