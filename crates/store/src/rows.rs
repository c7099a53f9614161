//! Query results, read by column name.

use crate::{StoreError, Value};

/// Rows of one result, with their column names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

/// One row, borrowing its result's column names.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl Rows {
    /// The first row, if any.
    pub fn first(&self) -> Option<Row<'_>> {
        self.iter().next()
    }

    pub fn iter(&self) -> impl Iterator<Item = Row<'_>> {
        self.rows.iter().map(|values| Row {
            columns: &self.columns,
            values,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl<'a> Row<'a> {
    fn value(&self, column: &str) -> Result<&'a Value, StoreError> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Shape(format!("no column `{column}`")))
    }

    /// A TEXT column that must not be NULL.
    pub fn text(&self, column: &str) -> Result<&'a str, StoreError> {
        self.opt_text(column)?
            .ok_or_else(|| StoreError::Shape(format!("`{column}` is NULL")))
    }

    /// A TEXT column that may be NULL.
    pub fn opt_text(&self, column: &str) -> Result<Option<&'a str>, StoreError> {
        match self.value(column)? {
            Value::Text(s) => Ok(Some(s)),
            Value::Null => Ok(None),
            other => Err(StoreError::Shape(format!(
                "`{column}` is {}, expected text",
                other.type_name()
            ))),
        }
    }

    /// An INTEGER column that must not be NULL.
    pub fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.opt_int(column)?
            .ok_or_else(|| StoreError::Shape(format!("`{column}` is NULL")))
    }

    /// An INTEGER column that may be NULL.
    pub fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        match self.value(column)? {
            Value::Integer(i) => Ok(Some(*i)),
            Value::Null => Ok(None),
            // A gateway may send integral numbers as reals; accept exact ones.
            Value::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(*f as i64)),
            other => Err(StoreError::Shape(format!(
                "`{column}` is {}, expected integer",
                other.type_name()
            ))),
        }
    }

    /// A 0/1 column.
    pub fn flag(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.opt_int(column)?.unwrap_or(0) != 0)
    }
}
