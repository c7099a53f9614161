//! Spin's HTTP routing: exact routes, `:name` segments and trailing `/...`
//! wildcards; the most specific match wins.
//!
//! Specificity is compared segment by segment from the left: a literal beats a
//! `:name` parameter, which beats the wildcard; a route that ends exactly where
//! the path ends beats a wildcard that matches nothing. So `/a/b/...` wins over
//! `/a/...` for `/a/b/c` (longest prefix), and `/a` wins over `/a/...` for `/a`.

use std::cmp::Ordering;

/// One segment of a route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parsed route such as `/p/:id/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

impl RoutePattern {
    /// Parses a manifest route.
    pub fn parse(raw: &str) -> Result<RoutePattern, String> {
        let path = raw
            .strip_prefix('/')
            .ok_or_else(|| format!("route `{raw}` must start with `/`"))?;
        let (path, wildcard) = if path == "..." {
            ("", true)
        } else if let Some(prefix) = path.strip_suffix("/...") {
            (prefix, true)
        } else {
            (path, false)
        };
        let mut segments = Vec::new();
        if !path.is_empty() {
            for segment in path.split('/') {
                if segment.is_empty() {
                    return Err(format!("route `{raw}` has an empty segment"));
                }
                if segment == "..." {
                    return Err(format!("route `{raw}`: `...` may only end a route"));
                }
                if let Some(name) = segment.strip_prefix(':') {
                    if name.is_empty()
                        || !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(format!("route `{raw}`: bad parameter `{segment}`"));
                    }
                    segments.push(Segment::Param(name.to_string()));
                } else {
                    segments.push(Segment::Literal(segment.to_string()));
                }
            }
        }
        Ok(RoutePattern {
            raw: raw.to_string(),
            segments,
            wildcard,
        })
    }

    /// The route as written in the manifest.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The route without its trailing `/...` (Spin's `spin-component-route`).
    pub fn without_wildcard(&self) -> &str {
        if self.raw == "/..." {
            ""
        } else {
            self.raw.strip_suffix("/...").unwrap_or(&self.raw)
        }
    }

    /// Matches a request path; returns the parameters and the unmatched tail
    /// (empty, or starting with `/`, as Spin's `spin-path-info`).
    fn matches<'p>(&self, path: &'p str) -> Option<(Vec<(String, String)>, &'p str)> {
        if !path.starts_with('/') {
            return None;
        }
        let mut params = Vec::new();
        let mut tail = path;
        for segment in &self.segments {
            let rest = tail.strip_prefix('/')?;
            let end = rest.find('/').unwrap_or(rest.len());
            let head = &rest[..end];
            match segment {
                Segment::Literal(literal) if literal == head => {}
                Segment::Param(name) if !head.is_empty() => {
                    params.push((name.clone(), head.to_string()));
                }
                _ => return None,
            }
            tail = &rest[end..];
        }
        if self.wildcard {
            Some((params, tail))
        } else if tail.is_empty() || (self.segments.is_empty() && tail == "/") {
            Some((params, ""))
        } else {
            None
        }
    }

    /// Orders two patterns by specificity (greater is more specific).
    fn specificity(&self, other: &RoutePattern) -> Ordering {
        let rank = |p: &RoutePattern, i: usize| -> u8 {
            match p.segments.get(i) {
                Some(Segment::Literal(_)) => 3,
                Some(Segment::Param(_)) => 2,
                None if !p.wildcard => 1,
                None => 0,
            }
        };
        let len = self.segments.len().max(other.segments.len()) + 1;
        for i in 0..len {
            match rank(self, i).cmp(&rank(other, i)) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

/// The component a request goes to, with what Spin tells the component about the match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'r, T> {
    pub target: &'r T,
    pub pattern: &'r RoutePattern,
    /// `:name` segments and their values.
    pub params: Vec<(String, String)>,
    /// The part of the path matched by a trailing `/...` (empty otherwise).
    pub path_info: String,
}

/// Routes request paths to targets (component slots).
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Router<T> {
    /// Builds a router; two triggers with the same route are an error.
    pub fn new(routes: Vec<(RoutePattern, T)>) -> Result<Router<T>, String> {
        for (i, (a, _)) in routes.iter().enumerate() {
            for (b, _) in routes.iter().skip(i + 1) {
                if a.segments == b.segments && a.wildcard == b.wildcard {
                    return Err(format!(
                        "duplicate route: `{}` and `{}` match the same paths",
                        a.raw, b.raw
                    ));
                }
            }
        }
        Ok(Router { routes })
    }

    /// The most specific route matching `path`, if any.
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_, T>> {
        let mut best: Option<RouteMatch<'_, T>> = None;
        for (pattern, target) in &self.routes {
            let Some((params, tail)) = pattern.matches(path) else {
                continue;
            };
            let better = match &best {
                None => true,
                Some(current) => pattern.specificity(current.pattern) == Ordering::Greater,
            };
            if better {
                best = Some(RouteMatch {
                    target,
                    pattern,
                    params,
                    path_info: tail.to_string(),
                });
            }
        }
        best
    }

    /// Every route and its target, in manifest order.
    pub fn routes(&self) -> impl Iterator<Item = (&RoutePattern, &T)> {
        self.routes.iter().map(|(p, t)| (p, t))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router<String> {
        Router::new(
            routes
                .iter()
                .map(|r| (RoutePattern::parse(r).unwrap(), r.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn hit(r: &Router<String>, path: &str) -> Option<(String, String)> {
        r.route(path).map(|m| (m.target.clone(), m.path_info))
    }

    #[test]
    fn exact_routes_match_only_themselves() {
        let r = router(&["/exact"]);
        assert_eq!(hit(&r, "/exact"), Some(("/exact".into(), "".into())));
        assert_eq!(hit(&r, "/exact/more"), None);
        assert_eq!(hit(&r, "/exactly"), None);
        assert_eq!(hit(&r, "/"), None);
    }

    #[test]
    fn wildcard_matches_itself_and_below() {
        let r = router(&["/api/..."]);
        assert_eq!(hit(&r, "/api"), Some(("/api/...".into(), "".into())));
        assert_eq!(
            hit(&r, "/api/x/y"),
            Some(("/api/...".into(), "/x/y".into()))
        );
        assert_eq!(hit(&r, "/apix"), None);
    }

    #[test]
    fn root_wildcard_catches_everything() {
        let r = router(&["/..."]);
        assert_eq!(hit(&r, "/"), Some(("/...".into(), "/".into())));
        assert_eq!(hit(&r, "/a/b"), Some(("/...".into(), "/a/b".into())));
    }

    #[test]
    fn longest_prefix_and_exact_win() {
        let r = router(&["/...", "/a/...", "/a/b/...", "/a/b"]);
        assert_eq!(hit(&r, "/a/b").unwrap().0, "/a/b");
        assert_eq!(hit(&r, "/a/b/c").unwrap().0, "/a/b/...");
        assert_eq!(hit(&r, "/a/c").unwrap().0, "/a/...");
        assert_eq!(hit(&r, "/z").unwrap().0, "/...");
    }

    #[test]
    fn literal_beats_parameter() {
        let r = router(&["/p/:id", "/p/new"]);
        assert_eq!(hit(&r, "/p/new").unwrap().0, "/p/new");
        let m = r.route("/p/42").unwrap();
        assert_eq!(m.target, "/p/:id");
        assert_eq!(m.params, vec![("id".to_string(), "42".to_string())]);
    }

    #[test]
    fn parameters_with_wildcard_give_path_info() {
        let r = router(&["/p/:id/..."]);
        let m = r.route("/p/42/rest/of/path").unwrap();
        assert_eq!(m.params, vec![("id".to_string(), "42".to_string())]);
        assert_eq!(m.path_info, "/rest/of/path");
        assert_eq!(m.pattern.without_wildcard(), "/p/:id");
        assert!(r.route("/p").is_none());
    }

    #[test]
    fn empty_parameter_does_not_match() {
        let r = router(&["/p/:id"]);
        assert!(r.route("/p/").is_none());
    }

    #[test]
    fn duplicates_are_refused() {
        let routes = vec![
            (RoutePattern::parse("/a").unwrap(), 1),
            (RoutePattern::parse("/a").unwrap(), 2),
        ];
        assert!(Router::new(routes).is_err());
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(RoutePattern::parse("a").is_err());
        assert!(RoutePattern::parse("/a//b").is_err());
        assert!(RoutePattern::parse("/a/.../b").is_err());
        assert!(RoutePattern::parse("/a/:").is_err());
    }
}
