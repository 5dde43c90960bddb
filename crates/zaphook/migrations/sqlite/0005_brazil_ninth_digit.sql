-- Brazilian mobile numbers kept in their eight-digit form (55 DD 8765-4321) take the ninth
-- digit (55 DD 98765-4321), the one form numbers are now normalised to; a number whose
-- nine-digit form already has a contact of its own is left as it is.
UPDATE contacts
SET number = substr(number, 1, 4) || '9' || substr(number, 5)
WHERE length(number) = 12
  AND substr(number, 1, 2) = '55'
  AND substr(number, 3, 1) BETWEEN '1' AND '9'
  AND substr(number, 4, 1) BETWEEN '1' AND '9'
  AND substr(number, 5, 1) BETWEEN '6' AND '9'
  AND number NOT GLOB '*[^0-9]*'
  AND NOT EXISTS (
    SELECT 1 FROM contacts AS other
    WHERE other.company_id = contacts.company_id
      AND other.number = substr(contacts.number, 1, 4) || '9' || substr(contacts.number, 5)
  );
