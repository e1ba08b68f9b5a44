-- Blink's `User.language`: the user's preferred language, a BCP 47 tag, or 'default' for
-- the device's own (Blink's meaning). Set by `userUpdateLanguage`.
ALTER TABLE users
    ADD COLUMN language TEXT NOT NULL DEFAULT 'default'
    CHECK (language = 'default' OR language ~ '^[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$');
