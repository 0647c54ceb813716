-- Stacks (hail.yaml applied with `hail apply`): the stack with the manifest
-- it last applied, and every resource it created, each as the JSON of
-- hail_model::stack::Stack and StackResource. A resource belongs to at most
-- one stack: (kind, name) is the key, whatever the stack.
CREATE TABLE stacks (
    stack_name TEXT PRIMARY KEY NOT NULL,
    doc        TEXT NOT NULL
);
CREATE TABLE stack_resources (
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    stack_name TEXT NOT NULL REFERENCES stacks (stack_name),
    doc        TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE INDEX stack_resources_by_stack ON stack_resources (stack_name, kind, name);
