//! The checks async-graphql 7.2 leaves out on `__typename` fields.

use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use async_graphql::{ErrorExtensionValues, Name, Pos, Positioned, ServerError, Value, Variables};

/// Checks what async-graphql 7.2 leaves unchecked on `__typename` fields.
///
/// Its validator skips `__typename` selections entirely (`visit_selection` only calls
/// `visit_field` for other names), so their arguments and directives are never validated;
/// then `remove_skipped_selection` reads `@include(if:)`/`@skip(if:)` with
/// `InputType::parse(..).unwrap_or_default()`, so a value that is not a Boolean becomes
/// `false`. `{ __typename @include(if: "yes") }` thus silently drops the only field and
/// answers `{"data": null}`. These are the validation errors the engine would report for
/// any other field, with code `INVALID_ARGUMENT`.
pub fn typename_errors(document: &ExecutableDocument, variables: &Variables) -> Vec<ServerError> {
    let mut check = TypenameCheck {
        document,
        variables,
        errors: Vec::new(),
    };
    match &document.operations {
        DocumentOperations::Single(op) => check.selection_set(&op.node.selection_set),
        DocumentOperations::Multiple(ops) => {
            for op in ops.values() {
                check.selection_set(&op.node.selection_set);
            }
        }
    }
    for fragment in document.fragments.values() {
        check.selection_set(&fragment.node.selection_set);
    }
    check.errors
}

struct TypenameCheck<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    errors: Vec<ServerError>,
}

impl TypenameCheck<'_> {
    fn error(&mut self, message: String, pos: Pos) {
        let mut error = ServerError::new(message, Some(pos));
        let mut extensions = ErrorExtensionValues::default();
        extensions.set("code", "INVALID_ARGUMENT");
        error.extensions = Some(extensions);
        self.errors.push(error);
    }

    fn selection_set(&mut self, set: &Positioned<SelectionSet>) {
        for selection in &set.node.items {
            match &selection.node {
                Selection::Field(field) => {
                    if field.node.name.node == "__typename" {
                        for (name, _) in &field.node.arguments {
                            self.error(
                                format!(
                                    "Unknown argument \"{}\" on field \"__typename\"",
                                    name.node
                                ),
                                name.pos,
                            );
                        }
                        for directive in &field.node.directives {
                            self.directive(directive);
                        }
                    }
                    self.selection_set(&field.node.selection_set);
                }
                Selection::InlineFragment(fragment) => {
                    self.selection_set(&fragment.node.selection_set);
                }
                // Fragment definitions are walked on their own.
                Selection::FragmentSpread(_) => {}
            }
        }
    }

    fn directive(&mut self, directive: &Positioned<Directive>) {
        let name = directive.node.name.node.as_str();
        if name != "include" && name != "skip" {
            self.error(
                format!("Unknown directive \"@{name}\" on field \"__typename\""),
                directive.pos,
            );
            return;
        }
        let mut has_if = false;
        for (arg, value) in &directive.node.arguments {
            if arg.node != "if" {
                self.error(
                    format!("Unknown argument \"{}\" on directive \"@{name}\"", arg.node),
                    arg.pos,
                );
                continue;
            }
            has_if = true;
            let resolved = value
                .node
                .clone()
                .into_const_with(|var| self.variable(&var).ok_or(()))
                .ok();
            if !matches!(resolved, Some(Value::Boolean(_))) {
                let shown = resolved.map_or_else(|| value.node.to_string(), |v| v.to_string());
                self.error(
                    format!(
                        "Invalid value for argument \"if\" of directive \"@{name}\", expected type \"Boolean!\", got {shown}"
                    ),
                    value.pos,
                );
            }
        }
        if !has_if {
            self.error(
                format!(
                    "Directive \"@{name}\" argument \"if\" of type \"Boolean!\" is required, but not provided"
                ),
                directive.pos,
            );
        }
    }

    /// The value of `$var`: the request's, else the default of the operation declaring it.
    fn variable(&self, var: &Name) -> Option<Value> {
        if let Some(value) = self.variables.get(var) {
            return Some(value.clone());
        }
        self.document
            .operations
            .iter()
            .flat_map(|(_, op)| op.node.variable_definitions.iter())
            .find(|def| def.node.name.node == *var)
            .and_then(|def| def.node.default_value.as_ref())
            .map(|default| default.node.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typename_directives() {
        let errors = |q: &str, vars: serde_json::Value| {
            let doc = async_graphql::parser::parse_query(q).expect("parses");
            typename_errors(&doc, &Variables::from_json(vars)).len()
        };
        let none = serde_json::json!({});
        assert_eq!(errors("{ __typename @include(if: true) }", none.clone()), 0);
        assert_eq!(
            errors("{ __typename @include(if: \"yes\") }", none.clone()),
            1
        );
        assert_eq!(errors("{ __typename @skip(if: 1) }", none.clone()), 1);
        assert_eq!(errors("{ __typename @include }", none.clone()), 1);
        assert_eq!(errors("{ __typename(x: 1) }", none.clone()), 1);
        assert_eq!(errors("{ __typename @foo }", none.clone()), 1);
        assert_eq!(
            errors(
                "query($v: Boolean!) { __typename @include(if: $v) }",
                serde_json::json!({ "v": false })
            ),
            0
        );
        assert_eq!(
            errors(
                "query($v: Boolean = true) { __typename @include(if: $v) }",
                none.clone()
            ),
            0
        );
        assert_eq!(
            errors(
                "query($v: String) { __typename @include(if: $v) }",
                serde_json::json!({ "v": "yes" })
            ),
            1
        );
        assert_eq!(
            errors(
                "{ ...F } fragment F on Query { __typename @skip(if: null) }",
                none
            ),
            1
        );
    }
}
