//! Interned names: touchpoints, channels, property keys and values become small integers, so
//! journeys over millions of events stay compact and reports compare integers, not strings.

use std::collections::HashMap;

/// An interned name. Only meaningful together with the [`Symbols`] table that issued it.
pub type Sym = u32;

/// Table of interned names. Ids are dense and stable for the table's lifetime.
#[derive(Debug, Default, Clone)]
pub struct Symbols {
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, Sym>,
}

impl Symbols {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `name`, adding it when it is new.
    pub fn intern(&mut self, name: &str) -> Sym {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = Sym::try_from(self.names.len()).expect("fewer than 2^32 distinct names");
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    /// The id of `name` if it was ever interned.
    pub fn get(&self, name: &str) -> Option<Sym> {
        self.ids.get(name).copied()
    }

    /// The name behind `id`. Panics on an id from another table, which is a programming error.
    pub fn name(&self, id: Sym) -> &str {
        &self.names[id as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_is_idempotent_and_reversible() {
        let mut symbols = Symbols::new();
        let visit = symbols.intern("site_visit");
        let open = symbols.intern("email_open");
        assert_ne!(visit, open);
        assert_eq!(symbols.intern("site_visit"), visit);
        assert_eq!(symbols.name(open), "email_open");
        assert_eq!(symbols.get("purchase"), None);
        assert_eq!(symbols.len(), 2);
    }
}
