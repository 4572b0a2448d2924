//! The category tree: lookups, writes, moves, reorders and tree order.
//!
//! The tree must stay acyclic: a new parent is checked by walking its ancestors up to a
//! root before the write, and readers that walk parents ([`Catalog::category_path`],
//! `tree_order`) are cycle-safe anyway, so even a tree corrupted by hand cannot make a
//! request loop.

use std::collections::{HashMap, HashSet};

use super::conflict::{Updated, category_conflict};
use super::input::{CategoryPatch, NewCategory};
use super::{Catalog, absent_as_none, dedup, parse_ref, validate};
use crate::datastore::{Category, CategoryId, Current, Datastore, Page, ProductFilter, Timestamp};
use crate::error::{Error, Input, Problem, Result};

impl<D: Datastore> Catalog<D> {
    /// A category by id; `None` for an unknown or malformed id.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn category(&self, id: &str) -> Result<Option<Category>> {
        let Some(id) = CategoryId::parse(id) else {
            return Ok(None);
        };
        absent_as_none(self.store.get_category(&id).await)
    }

    /// A category by slug; `None` when absent.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn category_by_slug(&self, slug: &str) -> Result<Option<Category>> {
        absent_as_none(self.store.get_category_by_slug(slug).await)
    }

    /// Batch read for loaders.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn categories_by_ids(&self, ids: &[CategoryId]) -> Result<Vec<Category>> {
        Ok(self.store.get_categories(ids).await?)
    }

    /// Every category in tree order: depth first, siblings by display order then name.
    ///
    /// # Errors
    /// Backend failures.
    pub async fn categories_in_tree_order(&self) -> Result<Vec<Category>> {
        let all = self.store.list_categories().await?;
        Ok(tree_order(all))
    }

    /// Children of each given category, by display order then name (one listing for all).
    ///
    /// # Errors
    /// Backend failures.
    pub async fn children_of(
        &self,
        parents: &[CategoryId],
    ) -> Result<HashMap<CategoryId, Vec<Category>>> {
        let wanted: HashSet<&CategoryId> = parents.iter().collect();
        let mut out: HashMap<CategoryId, Vec<Category>> = HashMap::new();
        for category in self.store.list_categories().await? {
            if let Some(parent) = &category.parent_id
                && wanted.contains(parent)
            {
                out.entry(parent.clone()).or_default().push(category);
            }
        }
        for children in out.values_mut() {
            sort_siblings(children);
        }
        Ok(out)
    }

    /// Slugs from the root down to `category`, walking parents (cycle-safe).
    ///
    /// # Errors
    /// Backend failures.
    pub async fn category_path(&self, category: &Category) -> Result<Vec<String>> {
        let mut path = vec![category.slug.clone()];
        let mut seen = HashSet::from([category.id.clone()]);
        let mut next = category.parent_id.clone();
        while let Some(id) = next {
            if !seen.insert(id.clone()) {
                break;
            }
            match self.store.get_category(&id).await {
                Ok(parent) => {
                    path.push(parent.slug.clone());
                    next = parent.parent_id;
                }
                Err(crate::datastore::Error::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            }
        }
        path.reverse();
        Ok(path)
    }

    /// Creates a category.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`], [`Error::Reference`] for an unknown parent,
    /// [`Error::AlreadyExists`] for a taken slug; backend failures.
    pub async fn create_category(&self, input: NewCategory) -> Result<Category> {
        validate::name("name", &input.name)?;
        validate::slug(&input.slug)?;
        validate::body(input.body.as_deref())?;
        let parent_id = match &input.parent_id {
            Some(raw) => Some(self.check_parent(raw, Input::Parent, None).await?),
            None => None,
        };
        let now = self.clock.next(None);
        let category = Category {
            id: CategoryId::generate(),
            name: input.name,
            slug: input.slug,
            parent_id,
            display_order: input.display_order.unwrap_or(0),
            body: input.body,
            created_at: now,
            updated_at: now,
        };
        self.write(self.store.create_category(&category))
            .await
            .map_err(|e| Error::from(e).missing_reference("category", Input::Parent))?;
        Ok(category)
    }

    /// Applies `patch` to the category `id` if `version` is still its `updatedAt`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidArgument`], [`Error::Reference`] (including
    /// cycles), [`Error::AlreadyExists`]; backend failures.
    pub async fn update_category(
        &self,
        id: &str,
        version: Timestamp,
        patch: CategoryPatch,
    ) -> Result<Updated<Category>> {
        let id = CategoryId::parse(id).ok_or_else(|| Error::not_found("category", id))?;
        let stored = self.store.get_category(&id).await?;
        let mut next = stored.clone();
        if let Some(v) = patch.name {
            validate::name("name", &v)?;
            next.name = v;
        }
        if let Some(v) = patch.slug {
            validate::slug(&v)?;
            next.slug = v;
        }
        if let Some(v) = patch.body {
            validate::body(v.as_deref())?;
            next.body = v;
        }
        if let Some(v) = patch.display_order {
            next.display_order = v;
        }
        if let Some(parent) = patch.parent_id {
            next.parent_id = match parent {
                Some(raw) => Some(self.check_parent(&raw, Input::Parent, Some(&id)).await?),
                None => None,
            };
        }
        self.write_category(stored, next, version).await
    }

    /// Deletes a leaf category that no product uses.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::FailedPrecondition`] naming children or products.
    pub async fn delete_category(&self, id: &str) -> Result<CategoryId> {
        let id = CategoryId::parse(id).ok_or_else(|| Error::not_found("category", id))?;
        let category = self.store.get_category(&id).await?;
        let children = self.children_of(std::slice::from_ref(&id)).await?;
        if let Some(kids) = children.get(&id).filter(|k| !k.is_empty()) {
            let names: Vec<&str> = kids.iter().map(|k| k.slug.as_str()).collect();
            return Err(Error::FailedPrecondition(format!(
                "category {:?} still has child categories: {}",
                category.slug,
                names.join(", ")
            )));
        }
        let filter = ProductFilter {
            category_id: Some(id.clone()),
            ..ProductFilter::default()
        };
        let products = self
            .store
            .list_products(
                &filter,
                &Page {
                    limit: 5,
                    ..Page::default()
                },
            )
            .await?;
        if !products.is_empty() {
            let count = self.store.count_products(&filter).await?;
            let skus: Vec<&str> = products.iter().map(|p| p.sku.as_str()).collect();
            return Err(Error::FailedPrecondition(format!(
                "category {:?} still has {count} product(s), e.g. sku {}",
                category.slug,
                skus.join(", ")
            )));
        }
        match self.write(self.store.delete_category(&id)).await {
            Ok(()) => Ok(id),
            // A child or product arrived between the check above and the delete.
            Err(crate::datastore::Error::InUse { .. }) => Err(Error::FailedPrecondition(format!(
                "category {:?} still has child categories or products",
                category.slug
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Moves `moved` under `new_parent` (if given), then sets `displayOrder` of each of
    /// `ordered` (siblings under `parent`) to its position. Returns the reordered siblings.
    ///
    /// # Errors
    /// [`Error::Reference`] for unknown ids, non-siblings, duplicates or cycles;
    /// [`Error::Conflict`] if a category changed concurrently; backend failures.
    pub async fn reorder_categories(
        &self,
        ordered: &[String],
        parent: Option<&str>,
        moved: Option<&str>,
        new_parent: Option<&str>,
    ) -> Result<Vec<Category>> {
        let parent = parent
            .map(|raw| parse_ref(raw, Input::Parent, CategoryId::parse))
            .transpose()?;
        if let Some(moved) = moved {
            let moved_id = parse_ref(moved, Input::MovedCategory, CategoryId::parse)?;
            let stored = match self.store.get_category(&moved_id).await {
                Err(crate::datastore::Error::NotFound { .. }) => {
                    return Err(Error::reference(
                        Input::MovedCategory,
                        moved_id.as_str(),
                        Problem::Missing,
                    ));
                }
                other => other?,
            };
            let mut next = stored.clone();
            next.parent_id = match new_parent {
                Some(raw) => Some(
                    self.check_parent(raw, Input::NewParent, Some(&moved_id))
                        .await?,
                ),
                None => None,
            };
            let version = stored.updated_at;
            let written = self
                .write_category(stored, next, version)
                .await
                .map_err(|e| e.for_input(Input::NewParent))?;
            if let Updated::Conflict { current, .. } = written {
                return Err(Error::Conflict(Current::Category(Box::new(current))));
            }
        } else if let Some(raw) = new_parent {
            return Err(Error::reference(
                Input::NewParent,
                raw,
                Problem::NothingMoved,
            ));
        }
        let ids = ordered
            .iter()
            .map(|raw| parse_ref(raw, Input::Ordered, CategoryId::parse))
            .collect::<Result<Vec<_>>>()?;
        if dedup(ids.clone()).len() != ids.len() {
            return Err(Error::reference(Input::Ordered, "", Problem::Repeated));
        }
        let found: HashMap<CategoryId, Category> = self
            .store
            .get_categories(&ids)
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        for id in &ids {
            let Some(category) = found.get(id) else {
                return Err(Error::reference(
                    Input::Ordered,
                    id.as_str(),
                    Problem::Missing,
                ));
            };
            if category.parent_id != parent {
                return Err(Error::reference(
                    Input::Ordered,
                    id.as_str(),
                    Problem::NotSibling {
                        parent: parent.as_ref().map(|p| p.as_str().to_owned()),
                    },
                ));
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for (position, id) in ids.iter().enumerate() {
            let stored = found[id].clone();
            let order = i32::try_from(position).unwrap_or(i32::MAX);
            if stored.display_order == order {
                out.push(stored);
                continue;
            }
            let mut next = stored.clone();
            next.display_order = order;
            let version = stored.updated_at;
            match self.write_category(stored, next, version).await? {
                Updated::Written(c) => out.push(c),
                Updated::Conflict { current, .. } => {
                    return Err(Error::Conflict(Current::Category(Box::new(current))));
                }
            }
        }
        Ok(out)
    }

    /// Checks that `raw` names an existing category that is not `child` nor one of its
    /// descendants (walking up from the new parent must not meet `child`).
    async fn check_parent(
        &self,
        raw: &str,
        input: Input,
        child: Option<&CategoryId>,
    ) -> Result<CategoryId> {
        let parent = parse_ref(raw, input, CategoryId::parse)?;
        let mut cursor = Some(parent.clone());
        let mut seen = HashSet::new();
        let mut first = true;
        while let Some(id) = cursor {
            if child == Some(&id) {
                return Err(Error::reference(
                    input,
                    parent.as_str(),
                    Problem::Cycle {
                        category: id.as_str().to_owned(),
                    },
                ));
            }
            if !seen.insert(id.clone()) {
                break;
            }
            match self.store.get_category(&id).await {
                Ok(c) => cursor = c.parent_id,
                Err(crate::datastore::Error::NotFound { .. }) if first => {
                    return Err(Error::reference(input, raw, Problem::Missing));
                }
                Err(crate::datastore::Error::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            }
            first = false;
        }
        Ok(parent)
    }

    /// Writes `next` over `stored` if `version` is still current.
    async fn write_category(
        &self,
        stored: Category,
        mut next: Category,
        version: Timestamp,
    ) -> Result<Updated<Category>> {
        if stored.updated_at != version {
            return Ok(category_conflict(stored, &next, version));
        }
        next.updated_at = self.clock.next(Some(stored.updated_at));
        match self.write(self.store.update_category(&next, version)).await {
            Ok(()) => Ok(Updated::Written(next)),
            Err(crate::datastore::Error::Conflict(Current::Category(current))) => {
                Ok(category_conflict(*current, &next, version))
            }
            // The parent vanished between the check and the write.
            Err(crate::datastore::Error::NotFound { entity, key })
                if entity == "category" && key != next.id.as_str() =>
            {
                Err(Error::reference(Input::Parent, key, Problem::Missing))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Siblings by display order, then name, then id (a total order, so output is stable).
fn sort_siblings(categories: &mut [Category]) {
    categories
        .sort_by(|a, b| (a.display_order, &a.name, &a.id).cmp(&(b.display_order, &b.name, &b.id)));
}

/// Orders categories depth first from the roots, siblings by display order then name.
/// Categories whose parent is missing are treated as roots, so none is ever dropped.
pub(crate) fn tree_order(all: Vec<Category>) -> Vec<Category> {
    let ids: HashSet<CategoryId> = all.iter().map(|c| c.id.clone()).collect();
    let mut children: HashMap<Option<CategoryId>, Vec<Category>> = HashMap::new();
    for c in all {
        let parent = c.parent_id.clone().filter(|p| ids.contains(p));
        children.entry(parent).or_default().push(c);
    }
    for list in children.values_mut() {
        sort_siblings(list);
        list.reverse();
    }
    let mut out = Vec::with_capacity(ids.len());
    let mut stack: Vec<Category> = children.remove(&None).unwrap_or_default();
    while let Some(c) = stack.pop() {
        if let Some(kids) = children.remove(&Some(c.id.clone())) {
            stack.extend(kids);
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn category(slug: &str, parent: Option<&Category>, order: i32) -> Category {
        let t = Timestamp::from_millis(1_700_000_000_000);
        Category {
            id: CategoryId::generate(),
            name: slug.to_uppercase(),
            slug: slug.to_owned(),
            parent_id: parent.map(|p| p.id.clone()),
            display_order: order,
            body: None,
            created_at: t,
            updated_at: t,
        }
    }

    fn slugs(list: &[Category]) -> Vec<&str> {
        list.iter().map(|c| c.slug.as_str()).collect()
    }

    #[test]
    fn depth_first_with_siblings_by_order_then_name() {
        let shoes = category("shoes", None, 1);
        let bags = category("bags", None, 0);
        let boots = category("boots", Some(&shoes), 0);
        let heels = category("heels", Some(&shoes), 0);
        let ankle = category("ankle", Some(&boots), 5);
        let totes = category("totes", Some(&bags), 0);
        let all = vec![ankle, heels, shoes, totes, boots, bags];
        let ordered = tree_order(all);
        assert_eq!(
            slugs(&ordered),
            ["bags", "totes", "shoes", "boots", "ankle", "heels"]
        );
    }

    #[test]
    fn a_category_whose_parent_is_missing_is_kept_as_a_root() {
        let gone = category("gone", None, 0);
        let orphan = category("orphan", Some(&gone), 0);
        let root = category("root", None, 1);
        assert_eq!(slugs(&tree_order(vec![root, orphan])), ["orphan", "root"]);
    }

    #[test]
    fn a_cycle_cannot_make_it_loop() {
        let mut a = category("a", None, 0);
        let b = category("b", Some(&a), 0);
        a.parent_id = Some(b.id.clone());
        let root = category("root", None, 0);
        // Both cycle members are unreachable from a root: they are left out, and the
        // walk ends.
        assert_eq!(slugs(&tree_order(vec![a, b, root])), ["root"]);
    }

    #[test]
    fn empty_in_empty_out() {
        assert!(tree_order(Vec::new()).is_empty());
    }
}
