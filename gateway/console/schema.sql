-- The console's search index: a cache of the journal, rebuilt whenever it cannot be
-- checked against the chain. Never the source of truth.
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY, identity TEXT, groups TEXT, client TEXT, database TEXT,
    application TEXT, tls TEXT, reason TEXT, start_time TEXT, start_seq INTEGER,
    end_time TEXT, end_kind TEXT, duration_s REAL, statements INTEGER DEFAULT 0,
    denied INTEGER DEFAULT 0, rows INTEGER DEFAULT 0, phi_rows INTEGER DEFAULT 0,
    recording_file TEXT, recording_final TEXT, recording_checkpoint TEXT,
    cut_off INTEGER DEFAULT 0);
CREATE INDEX IF NOT EXISTS sessions_identity ON sessions (identity, start_seq);
CREATE INDEX IF NOT EXISTS sessions_start ON sessions (start_seq);
CREATE TABLE IF NOT EXISTS statements (
    seq INTEGER PRIMARY KEY, time TEXT, session TEXT, n INTEGER, identity TEXT,
    database TEXT, client TEXT, verdict TEXT, rules TEXT, tables TEXT, phi INTEGER,
    reason TEXT, sql TEXT, refused TEXT, rows INTEGER, bytes INTEGER, duration_ms REAL,
    sqlstate TEXT, error TEXT);
CREATE INDEX IF NOT EXISTS statements_session ON statements (session, n);
CREATE INDEX IF NOT EXISTS statements_identity ON statements (identity, seq);
CREATE INDEX IF NOT EXISTS statements_verdict ON statements (verdict, seq);
CREATE INDEX IF NOT EXISTS statements_database ON statements (database, seq);
CREATE INDEX IF NOT EXISTS statements_time ON statements (time);
CREATE VIRTUAL TABLE IF NOT EXISTS statements_text USING fts5 (
    sql, tables, content = '', tokenize = "unicode61 tokenchars '_'");
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY, time TEXT, rule TEXT, condition TEXT, subject TEXT,
    summary TEXT, identity TEXT, session TEXT, trigger_seq INTEGER);
CREATE TABLE IF NOT EXISTS hourly (
    hour TEXT, identity TEXT, statements INTEGER, denied INTEGER, phi_rows INTEGER,
    PRIMARY KEY (hour, identity)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS table_use (
    name TEXT PRIMARY KEY, statements INTEGER, phi INTEGER) WITHOUT ROWID;
