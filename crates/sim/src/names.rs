//! Built-in name lists for generated patients. Names are common in the places they come from;
//! any likeness to a real person is a coincidence of common names.

pub(crate) const WESTERN_GIVEN_FEMALE: &[&str] = &[
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Susan",
    "Margaret",
    "Dorothy",
    "Helen",
    "Sarah",
    "Emma",
    "Olivia",
    "Sophie",
    "Anna",
    "Claire",
    "Ruth",
    "Joan",
    "Alice",
    "Grace",
    "Maria",
    "Ingrid",
    "Fatima",
    "Aisha",
    "Priya",
];

pub(crate) const WESTERN_GIVEN_MALE: &[&str] = &[
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Thomas", "Charles",
    "George", "Peter", "Daniel", "Paul", "Mark", "Andrew", "Edward", "Henry", "Samuel", "Oliver",
    "Jan", "Luca", "Omar", "Ahmed", "Rajesh",
];

pub(crate) const WESTERN_FAMILY: &[&str] = &[
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor",
    "Anderson", "Thomas", "Moore", "Martin", "Clarke", "Walker", "Wright", "Hughes", "Evans",
    "Murphy", "O'Brien", "Kowalski", "Rossi", "Schmidt", "Hansen", "Khan", "Patel", "Garcia",
    "Novak",
];

/// Chinese names in Hanyu Pinyin; the full name is written family name first.
pub(crate) const CHINESE_GIVEN_FEMALE: &[&str] = &[
    "Fang", "Xiuying", "Na", "Min", "Jing", "Li", "Yan", "Juan", "Xia", "Hui", "Mei", "Ting",
];

pub(crate) const CHINESE_GIVEN_MALE: &[&str] = &[
    "Wei", "Jun", "Hao", "Lei", "Qiang", "Jian", "Yong", "Jie", "Tao", "Ming", "Chao", "Gang",
];

pub(crate) const CHINESE_FAMILY: &[&str] = &[
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma",
    "Zhu", "Hu", "Guo", "He", "Lin",
];
