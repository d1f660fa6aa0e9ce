//! A small pickle machine: enough of protocols 2–5 to read the `data.pkl` that
//! `torch.save` writes for a state dict. It builds plain values (ints, strings,
//! tuples, lists, dicts), storages from persistent ids, and tensor views from
//! `torch._utils._rebuild_tensor_v2`; any other callable is refused.
//!
//! Containers are reference-counted so that memo entries share them, as in
//! Python. They are dropped iteratively, so a deeply nested stream cannot
//! overflow the stack.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::dtype::DType;
use super::WeightsError;

/// A torch storage named by a persistent id: `data/<key>` in the archive.
#[derive(Debug)]
pub(crate) struct Storage {
    pub key: String,
    /// The storage class, e.g. `FloatStorage`.
    pub type_name: String,
    /// `None` for classes we do not convert (complex, quantized, ...).
    pub dtype: Option<DType>,
}

/// A strided view of a storage, as `_rebuild_tensor_v2` describes it.
#[derive(Debug)]
pub(crate) struct TensorRef {
    pub storage: Rc<Storage>,
    pub offset: usize,
    pub size: Vec<usize>,
    pub stride: Vec<usize>,
}

/// A pickled value. Payloads no caller reads yet (bool, float, bytes) are kept
/// so that the machine stays faithful to the stream.
#[derive(Clone)]
#[allow(dead_code)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for `i64`.
    BigInt,
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Seq>),
    List(Rc<ListCell>),
    Dict(Rc<DictCell>),
    Global(Rc<(String, String)>),
    Storage(Rc<Storage>),
    Tensor(Rc<TensorRef>),
}

pub(crate) struct Seq(pub Vec<Value>);
pub(crate) struct ListCell(pub RefCell<Vec<Value>>);
/// Items in insertion order; a later item with an equal key wins when read.
pub(crate) struct DictCell(pub RefCell<Vec<(Value, Value)>>);

impl Value {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    fn new_dict(items: Vec<(Value, Value)>) -> Value {
        Value::Dict(Rc::new(DictCell(RefCell::new(items))))
    }
}

/// Shallow on purpose: containers may be deeply nested or cyclic.
impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Global(g) => write!(f, "{}.{}", g.0, g.1),
            other => write!(f, "<{}>", other.kind()),
        }
    }
}

// Iterative drop: move the children of uniquely owned containers onto a work
// list instead of recursing into them.
fn take_children(v: &mut Value, out: &mut Vec<Value>) {
    match v {
        Value::Tuple(rc) => {
            if let Some(s) = Rc::get_mut(rc) {
                out.append(&mut s.0);
            }
        }
        Value::List(rc) => {
            if let Some(l) = Rc::get_mut(rc) {
                out.append(l.0.get_mut());
            }
        }
        Value::Dict(rc) => {
            if let Some(d) = Rc::get_mut(rc) {
                for (k, v) in d.0.get_mut().drain(..) {
                    out.push(k);
                    out.push(v);
                }
            }
        }
        _ => {}
    }
}

fn drop_all(mut work: Vec<Value>) {
    while let Some(mut v) = work.pop() {
        take_children(&mut v, &mut work);
        // `v` now has no children of its own and drops shallowly.
    }
}

impl Drop for Seq {
    fn drop(&mut self) {
        drop_all(std::mem::take(&mut self.0));
    }
}
impl Drop for ListCell {
    fn drop(&mut self) {
        drop_all(std::mem::take(self.0.get_mut()));
    }
}
impl Drop for DictCell {
    fn drop(&mut self) {
        let items = std::mem::take(self.0.get_mut());
        drop_all(items.into_iter().flat_map(|(k, v)| [k, v]).collect());
    }
}

/// Runs a pickle stream and returns the value `STOP` leaves on the stack.
/// `file` and `entry` name the archive and its pickle for messages.
pub(crate) fn load(data: &[u8], file: &str, entry: &str) -> Result<Value, WeightsError> {
    let mut m = Machine {
        data,
        pos: 0,
        file,
        entry,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        copy_budget: std::cell::Cell::new(COPY_BUDGET_PER_BYTE.saturating_mul(data.len()).saturating_add(COPY_BUDGET_BASE)),
    };
    m.run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    file: &'a str,
    entry: &'a str,
    stack: Vec<Value>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    /// Items `call` may still copy (see `COPY_BUDGET_PER_BYTE`).
    copy_budget: std::cell::Cell<usize>,
}

/// Calls such as `tuple(list)` copy their argument, and a memoized list can
/// be passed to them again and again for a few bytes each: without a budget
/// a 1 MB pickle could allocate tens of GB. Real state dicts copy each item
/// about once.
const COPY_BUDGET_PER_BYTE: usize = 16;
const COPY_BUDGET_BASE: usize = 1 << 20;

impl Machine<'_> {
    fn err(&self, message: impl std::fmt::Display) -> WeightsError {
        WeightsError::format(
            self.file,
            format!("{} at byte {}: {message}", self.entry, self.pos),
        )
    }

    /// Spends `n` items of the copy budget.
    fn charge_copy(&self, n: usize) -> Result<(), WeightsError> {
        let left = self.copy_budget.get();
        if n > left {
            return Err(self.err("the pickle copies more items than its size can account for (a crafted file?)"));
        }
        self.copy_budget.set(left - n);
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&[u8], WeightsError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let Some(end) = end else {
            return Err(self.err(format!(
                "truncated: {n} more bytes needed, {} left",
                self.data.len() - self.pos
            )));
        };
        let s = self.data.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self) -> Result<[u8; N], WeightsError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        for (d, b) in a.iter_mut().zip(s) {
            *d = *b;
        }
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, WeightsError> {
        Ok(self.arr::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, WeightsError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn len_u64(&mut self) -> Result<usize, WeightsError> {
        let n = u64::from_le_bytes(self.arr()?);
        usize::try_from(n).map_err(|_| self.err(format!("length {n} too large")))
    }

    fn line(&mut self) -> Result<String, WeightsError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err("truncated: unterminated GLOBAL line"));
        };
        let s = self.take(n)?.to_vec();
        self.pos += 1; // the newline, known to be there
        String::from_utf8(s).map_err(|_| self.err("GLOBAL name is not UTF-8"))
    }

    fn string(&mut self, n: usize) -> Result<Value, WeightsError> {
        let s = self.take(n)?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(Value::Str(Rc::from(s))),
            Err(_) => Err(self.err("string is not valid UTF-8")),
        }
    }

    /// Stack height below which the current MARK forbids popping.
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn pop(&mut self) -> Result<Value, WeightsError> {
        if self.stack.len() <= self.fence() {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn pop_n(&mut self, n: usize) -> Result<Vec<Value>, WeightsError> {
        let at = self
            .stack
            .len()
            .checked_sub(n)
            .filter(|&at| at >= self.fence());
        let Some(at) = at else {
            return Err(self.err("stack underflow"));
        };
        Ok(self.stack.split_off(at))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, WeightsError> {
        let Some(mark) = self.marks.pop() else {
            return Err(self.err("no MARK on the stack"));
        };
        if mark > self.stack.len() {
            return Err(self.err("stack underflow below MARK"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn top(&self) -> Result<&Value, WeightsError> {
        if self.stack.len() <= self.fence() {
            return Err(self.err("stack underflow"));
        }
        self.stack.last().ok_or_else(|| self.err("stack underflow"))
    }

    fn memo_put(&mut self, idx: u32) -> Result<(), WeightsError> {
        let v = self.top()?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn memo_get(&mut self, idx: u32) -> Result<(), WeightsError> {
        let v = self
            .memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {idx} not defined")))?;
        self.push(v);
        Ok(())
    }

    fn extend_top(&mut self, items: Vec<Value>) -> Result<(), WeightsError> {
        match self.top()? {
            Value::List(l) => {
                l.0.borrow_mut().extend(items);
                Ok(())
            }
            other => Err(self.err(format!("cannot append to a {}", other.kind()))),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), WeightsError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.err("odd number of items for a dict"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        match self.top()? {
            Value::Dict(d) => {
                d.0.borrow_mut().extend(pairs);
                Ok(())
            }
            other => Err(self.err(format!("cannot set items on a {}", other.kind()))),
        }
    }

    fn run(&mut self) -> Result<Value, WeightsError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {p}")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only
                    self.take(8)?;
                }
                b'.' => {
                    // STOP
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    // POP (pops the MARK itself when the stack is at it)
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                b'}' => self.push(Value::new_dict(Vec::new())),
                b']' | 0x8f => self.push(Value::List(Rc::new(ListCell(RefCell::new(Vec::new()))))),
                b')' => self.push(Value::Tuple(Rc::new(Seq(Vec::new())))),
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.arr()?);
                    self.push(Value::Int(v.into()));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.arr()?);
                    self.push(Value::Int(v.into()));
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4: little-endian two's complement
                    let n = if op == 0x8a {
                        usize::from(self.u8()?)
                    } else {
                        self.u32()? as usize
                    };
                    let bytes = self.take(n)?;
                    let v = if bytes.len() <= 8 {
                        let fill = if bytes.last().is_some_and(|&b| b & 0x80 != 0) {
                            0xff
                        } else {
                            0
                        };
                        let mut a = [fill; 8];
                        for (d, s) in a.iter_mut().zip(bytes) {
                            *d = *s;
                        }
                        Value::Int(i64::from_le_bytes(a))
                    } else {
                        Value::BigInt
                    };
                    self.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.arr()?);
                    self.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.push(v);
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let v = self.string(n)?;
                    self.push(v);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.string(n)?;
                    self.push(v);
                }
                b'U' | b'T' | b'C' | b'B' | 0x8e => {
                    // SHORT_BINSTRING / BINSTRING (py2 str) and the BINBYTES family
                    let n = match op {
                        b'U' | b'C' => usize::from(self.u8()?),
                        b'T' | b'B' => self.u32()? as usize,
                        _ => self.len_u64()?,
                    };
                    let bytes = self.take(n)?;
                    let v = if op == b'U' || op == b'T' {
                        // py2 str: text, read as latin-1
                        Value::Str(Rc::from(
                            bytes.iter().map(|&b| char::from(b)).collect::<String>(),
                        ))
                    } else {
                        Value::Bytes(Rc::from(bytes))
                    };
                    self.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::new(Seq(items))));
                }
                0x85..=0x87 => {
                    let items = self.pop_n(usize::from(op - 0x84))?;
                    self.push(Value::Tuple(Rc::new(Seq(items))));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(ListCell(RefCell::new(items)))));
                }
                0x91 => {
                    // FROZENSET: kept as a list
                    let items = self.pop_mark()?;
                    self.push(Value::List(Rc::new(ListCell(RefCell::new(items)))));
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_top(vec![v])?;
                }
                b'e' | 0x90 => {
                    // APPENDS / ADDITEMS
                    let items = self.pop_mark()?;
                    self.extend_top(items)?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::new_dict(Vec::new()));
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i.into())?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i =
                        u32::try_from(self.memo.len()).map_err(|_| self.err("memo too large"))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(i.into())?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(Rc::new((module, name))));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.push(Value::Global(Rc::new((m.to_string(), n.to_string()))))
                        }
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return Err(self.err(format!(
                            "REDUCE arguments are a {}, not a tuple",
                            args.kind()
                        )));
                    };
                    let v = self.call(&func, &args.0, 0)?;
                    self.push(v);
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args)
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return Err(self.err(format!(
                            "NEWOBJ arguments are a {}, not a tuple",
                            args.kind()
                        )));
                    };
                    let v = self.call(&cls, &args.0, 0)?;
                    self.push(v);
                }
                0x92 => {
                    // NEWOBJ_EX: cls, args, kwargs
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let Value::Tuple(args) = args else {
                        return Err(self.err(format!(
                            "NEWOBJ_EX arguments are a {}, not a tuple",
                            args.kind()
                        )));
                    };
                    let v = self.call(&cls, &args.0, 0)?;
                    self.push(v);
                }
                b'b' => {
                    // BUILD: sets attributes (e.g. `_metadata` on an OrderedDict),
                    // which a state dict's tensors do not depend on.
                    let _state = self.pop()?;
                    self.top()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(&pid)?;
                    self.push(v);
                }
                _ => {
                    self.pos = at;
                    return Err(WeightsError::UnsupportedOpcode {
                        file: self.file.to_string(),
                        entry: self.entry.to_string(),
                        opcode: opcode_name(op),
                        offset: at,
                    });
                }
            }
        }
    }

    fn unsupported(&self, module: &str, name: &str) -> WeightsError {
        WeightsError::UnsupportedGlobal {
            file: self.file.to_string(),
            entry: self.entry.to_string(),
            global: format!("{module}.{name}"),
        }
    }

    /// Calls a global with `args` (REDUCE, NEWOBJ).
    fn call(&self, func: &Value, args: &[Value], depth: u32) -> Result<Value, WeightsError> {
        let Value::Global(g) = func else {
            return Err(self.err(format!("cannot call a {}", func.kind())));
        };
        let (module, name) = (g.0.as_str(), g.1.as_str());
        match (module, name) {
            ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => {
                let mut items = Vec::new();
                if let Some(Value::List(l)) = args.first() {
                    self.charge_copy(l.0.borrow().len())?;
                    for pair in l.0.borrow().iter() {
                        if let Value::Tuple(t) = pair {
                            if let [k, v] = t.0.as_slice() {
                                items.push((k.clone(), v.clone()));
                            }
                        }
                    }
                }
                Ok(Value::new_dict(items))
            }
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                self.rebuild_tensor(args)
            }
            ("torch._utils", "_rebuild_parameter")
            | ("torch._utils", "_rebuild_parameter_with_state") => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.err(format!("{name} expects a tensor"))),
            },
            ("torch._tensor", "_rebuild_from_type_v2") if depth < 4 => {
                // (func, new_type, args, state): a tensor subclass; keep the tensor.
                match args {
                    [f, _, Value::Tuple(inner), ..] => self.call(f, &inner.0, depth + 1),
                    _ => Err(self.err("bad arguments to _rebuild_from_type_v2")),
                }
            }
            ("torch", "Size") | ("builtins", "tuple") | ("__builtin__", "tuple") => {
                match args.first() {
                    Some(t @ Value::Tuple(_)) => Ok(t.clone()),
                    Some(Value::List(l)) => {
                        self.charge_copy(l.0.borrow().len())?;
                        Ok(Value::Tuple(Rc::new(Seq(l.0.borrow().clone()))))
                    }
                    None => Ok(Value::Tuple(Rc::new(Seq(Vec::new())))),
                    Some(other) => Err(self.err(format!("{name} of a {}", other.kind()))),
                }
            }
            ("_codecs", "encode") => match args.first() {
                // how protocol 2 pickles `bytes`: _codecs.encode(text, "latin1")
                Some(Value::Str(s)) => {
                    self.charge_copy(s.len())?;
                    let latin1 = matches!(args.get(1), Some(Value::Str(e)) if e.as_ref() == "latin1" || e.as_ref() == "latin-1");
                    let bytes: Vec<u8> = if latin1 {
                        s.chars()
                            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                            .collect()
                    } else {
                        s.as_bytes().to_vec()
                    };
                    Ok(Value::Bytes(Rc::from(bytes)))
                }
                _ => Err(self.err("bad arguments to _codecs.encode")),
            },
            _ => Err(self.unsupported(module, name)),
        }
    }

    fn persistent_load(&self, pid: &Value) -> Result<Value, WeightsError> {
        let Value::Tuple(t) = pid else {
            return Err(self.err(format!("persistent id is a {}, not a tuple", pid.kind())));
        };
        match t.0.as_slice() {
            [Value::Str(tag), Value::Global(g), key, _location, _numel, ..]
                if tag.as_ref() == "storage" =>
            {
                let key = match key {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    other => return Err(self.err(format!("storage key is a {}", other.kind()))),
                };
                if key.is_empty() || key.contains(['/', '\\']) || key.contains("..") {
                    return Err(self.err(format!("bad storage key {key:?}")));
                }
                let (module, name) = (g.0.as_str(), g.1.as_str());
                if module != "torch" && module != "torch.storage" {
                    return Err(self.unsupported(module, name));
                }
                Ok(Value::Storage(Rc::new(Storage {
                    key,
                    type_name: name.to_string(),
                    dtype: DType::from_torch_storage(name),
                })))
            }
            _ => Err(self.err(
                "unsupported persistent id (expected ('storage', type, key, location, numel))",
            )),
        }
    }

    fn usize_of(&self, v: &Value, what: &str) -> Result<usize, WeightsError> {
        match v {
            Value::Int(i) => usize::try_from(*i)
                .map_err(|_| self.err(format!("{what} {i} is negative or too large"))),
            other => Err(self.err(format!("{what} is a {}, not an int", other.kind()))),
        }
    }

    fn usizes(&self, v: &Value, what: &str) -> Result<Vec<usize>, WeightsError> {
        let Value::Tuple(t) = v else {
            return Err(self.err(format!("tensor {what} is a {}, not a tuple", v.kind())));
        };
        t.0.iter().map(|x| self.usize_of(x, what)).collect()
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`.
    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value, WeightsError> {
        let [Value::Storage(storage), offset, size, stride, ..] = args else {
            return Err(self.err(
                "bad arguments to _rebuild_tensor_v2 (expected storage, offset, size, stride, ...)",
            ));
        };
        let offset = self.usize_of(offset, "storage offset")?;
        let size = self.usizes(size, "size")?;
        let stride = self.usizes(stride, "stride")?;
        if size.len() != stride.len() {
            return Err(self.err(format!(
                "tensor size {size:?} and stride {stride:?} differ in length"
            )));
        }
        Ok(Value::Tensor(Rc::new(TensorRef {
            storage: storage.clone(),
            offset,
            size,
            stride,
        })))
    }
}

fn opcode_name(op: u8) -> String {
    let name = match op {
        b'I' => "INT",
        b'L' => "LONG",
        b'S' => "STRING",
        b'V' => "UNICODE",
        b'F' => "FLOAT",
        b'P' => "PERSID",
        b'p' => "PUT",
        b'g' => "GET",
        b'i' => "INST",
        b'o' => "OBJ",
        0x82..=0x84 => "EXT",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => "",
    };
    if name.is_empty() {
        format!("0x{op:02x}")
    } else {
        format!("{name} (0x{op:02x})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[u8]) -> Result<Value, WeightsError> {
        load(data, "x.bin", "archive/data.pkl")
    }

    #[test]
    fn builds_containers_and_memo() {
        // {'a': [1, -2, 300], 'b': (True, None, 'é')} with memo reuse of the list
        let mut p = vec![
            0x80, 2, b'}', b'q', 0, b'(', 0x8c, 1, b'a', b']', b'q', 1, b'(', b'K', 1, b'J',
        ];
        p.extend((-2i32).to_le_bytes());
        p.extend([
            b'M', 44, 1, b'e', 0x8c, 1, b'b', 0x88, b'N', b'X', 2, 0, 0, 0, 0xc3, 0xa9, 0x87, b'u',
        ]);
        p.extend([0x8c, 1, b'c', b'h', 1, b's', b'.']);
        let Value::Dict(d) = run(&p).unwrap() else {
            panic!("not a dict")
        };
        let items = d.0.borrow();
        assert_eq!(items.len(), 3);
        let Value::List(l) = &items[0].1 else {
            panic!()
        };
        let ints: Vec<i64> =
            l.0.borrow()
                .iter()
                .map(|v| if let Value::Int(i) = v { *i } else { 99 })
                .collect();
        assert_eq!(ints, vec![1, -2, 300]);
        let Value::Tuple(t) = &items[1].1 else {
            panic!()
        };
        assert!(matches!(&t.0[2], Value::Str(s) if s.as_ref() == "é"));
        // memo shares the list
        let Value::List(l2) = &items[2].1 else {
            panic!()
        };
        assert!(Rc::ptr_eq(l, l2));
    }

    #[test]
    fn long1_is_twos_complement() {
        for (bytes, want) in [
            (vec![0xff], -1i64),
            (vec![0x00, 0x01], 256),
            (vec![], 0),
            (vec![0x80], -128),
        ] {
            let mut p = vec![0x80, 2, 0x8a, bytes.len() as u8];
            p.extend(&bytes);
            p.push(b'.');
            assert!(
                matches!(run(&p).unwrap(), Value::Int(i) if i == want),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn errors_do_not_panic() {
        let cases: &[&[u8]] = &[
            b"",
            &[0x80],
            &[0x80, 2],
            &[0x80, 2, b'.'],
            &[0x80, 2, b'X', 0xff, 0xff, 0xff, 0xff],
            &[
                0x80, 2, 0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            &[0x80, 2, b'h', 7, b'.'],
            &[0x80, 2, b'(', b'a'],
            &[0x80, 2, b')', b'a'],
            &[0x80, 2, b'N', b'(', 0x85],
            &[0x80, 2, b'N', b'(', b'0', b'0', b'.'],
            &[0x80, 2, b'(', b'N', b'N', b'N', b'u'],
            &[0x80, 2, b'c', b'o', b's'],
            &[0x80, 2, b'N', b')', b'R', b'.'],
            &[0x80, 2, b'N', b'Q', b'.'],
            &[0x80, 2, b'N', b'b'],
            &[0x80, 9],
        ];
        for c in cases {
            let e = run(c).err().unwrap_or_else(|| panic!("{c:?} should fail"));
            assert!(e.to_string().contains("x.bin"), "{e}");
        }
    }

    /// tuple(memoized list) over and over: 7 bytes each, 1000 items copied
    /// each, so the copies outgrow any budget the pickle's size allows.
    #[test]
    fn repeated_copies_of_a_memoized_list_are_refused() {
        let mut p = vec![0x80, 2, b']', b'q', 0, b'('];
        for _ in 0..1000 {
            p.extend([b'K', 1]);
        }
        p.extend(b"ec__builtin__\ntuple\nq\x01");
        for _ in 0..2000 {
            p.extend([b'h', 1, b'h', 0, 0x85, b'R', b'0']);
        }
        p.push(b'.');
        let e = run(&p).expect_err("should run out of copy budget").to_string();
        assert!(e.contains("copies more items"), "{e}");
    }

    #[test]
    fn unknown_opcode_and_global_are_named() {
        let e = run(&[0x80, 2, b'I', b'1', b'\n', b'.'])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("INT") && e.contains("x.bin") && e.contains("byte 2"),
            "{e}"
        );
        let mut p = vec![0x80, 2];
        p.extend(b"cos\nsystem\nX\x02\x00\x00\x00ls\x85R.");
        let e = run(&p).unwrap_err().to_string();
        assert!(e.contains("`os.system`") && e.contains("x.bin"), "{e}");
    }

    #[test]
    fn deep_nesting_drops_without_overflow() {
        // one million nested 1-tuples, then a list appended to itself
        let mut p = vec![0x80, 2, b')'];
        p.extend(std::iter::repeat_n(0x85u8, 1_000_000));
        p.extend([b']', b'q', 0, b'h', 0, b'a', b'0', b'.']);
        assert!(run(&p).is_ok());
        // one million nested lists: MARK × n, LIST × n
        let mut p = vec![0x80, 2];
        p.extend(std::iter::repeat_n(b'(', 1_000_000));
        p.extend(std::iter::repeat_n(b'l', 1_000_000));
        p.push(b'.');
        assert!(matches!(run(&p), Ok(Value::List(_))));
    }
}
