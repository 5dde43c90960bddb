-- In a group conversation, the contact who wrote the message (`contactmessage` in payloads).
ALTER TABLE messages ADD COLUMN participant_id INTEGER;
