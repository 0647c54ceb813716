-- How far each container's log file has been shipped into CloudWatch Logs
-- events: the file's inode and the byte offset after the last shipped line.
-- Updated in the same transaction as the events it covers, so a crash
-- neither loses nor repeats a line.
CREATE TABLE log_cursors (
    task_id   TEXT NOT NULL,
    container TEXT NOT NULL,
    inode     INTEGER,
    offset    INTEGER NOT NULL,
    PRIMARY KEY (task_id, container)
);
