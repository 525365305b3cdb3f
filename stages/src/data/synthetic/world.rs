//! The fictional world of `corpus.synthetic`: value pools for each attribute and the
//! seeded drawing of people with unique names.
//!
//! Pools are small (30-40 values per attribute) so that a tiny model can learn them,
//! and names are drawn without replacement from first x last name pairs, so every
//! name is unique across both populations.

use serde::Serialize;

use crate::rng::SplitMix64;

/// First names with their grammatical gender (`true` = she/her).
const FIRST_NAMES: &[(&str, bool)] = &[
    ("Alice", true),
    ("Beatrice", true),
    ("Clara", true),
    ("Diana", true),
    ("Elena", true),
    ("Fiona", true),
    ("Grace", true),
    ("Helena", true),
    ("Iris", true),
    ("Julia", true),
    ("Katrin", true),
    ("Laura", true),
    ("Maya", true),
    ("Nora", true),
    ("Olivia", true),
    ("Paula", true),
    ("Rosa", true),
    ("Sofia", true),
    ("Tara", true),
    ("Ursula", true),
    ("Vera", true),
    ("Wendy", true),
    ("Yara", true),
    ("Zoe", true),
    ("Amelia", true),
    ("Bianca", true),
    ("Celine", true),
    ("Daphne", true),
    ("Esther", true),
    ("Freya", true),
    ("Adrian", false),
    ("Bruno", false),
    ("Carlos", false),
    ("Daniel", false),
    ("Edgar", false),
    ("Felix", false),
    ("Gustav", false),
    ("Henry", false),
    ("Ivan", false),
    ("Jonas", false),
    ("Karl", false),
    ("Lucas", false),
    ("Marco", false),
    ("Nathan", false),
    ("Oscar", false),
    ("Peter", false),
    ("Quentin", false),
    ("Rafael", false),
    ("Simon", false),
    ("Tobias", false),
    ("Umar", false),
    ("Victor", false),
    ("Walter", false),
    ("Xavier", false),
    ("Yusuf", false),
    ("Anton", false),
    ("Boris", false),
    ("Cyril", false),
    ("Dmitri", false),
    ("Emil", false),
];

const LAST_NAMES: &[&str] = &[
    "Abbott",
    "Bauer",
    "Castillo",
    "Dalton",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hoffman",
    "Ishikawa",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrov",
    "Quinlan",
    "Rossi",
    "Schneider",
    "Tanaka",
    "Ullman",
    "Varga",
    "Weber",
    "Yilmaz",
    "Zimmer",
    "Almeida",
    "Brennan",
    "Costa",
    "Dubois",
    "Engel",
    "Ferreira",
    "Gallagher",
    "Horvath",
    "Ivanova",
    "Jovanovic",
    "Keller",
    "Larsen",
    "Marino",
    "Nielsen",
    "Ortega",
    "Pereira",
    "Ramos",
    "Sandoval",
    "Thornton",
    "Urquhart",
    "Vasquez",
    "Whitfield",
    "Young",
    "Zhang",
    "Arnold",
    "Blackwood",
    "Carver",
    "Drummond",
    "Ellison",
    "Fairbanks",
    "Griffin",
    "Hartley",
    "Ingram",
    "Jarvis",
    "Kingsley",
];

const CITIES: &[&str] = &[
    "Paris",
    "Berlin",
    "Madrid",
    "Rome",
    "Vienna",
    "Prague",
    "Lisbon",
    "Dublin",
    "Oslo",
    "Stockholm",
    "Helsinki",
    "Warsaw",
    "Budapest",
    "Athens",
    "Istanbul",
    "Cairo",
    "Nairobi",
    "Lagos",
    "Mumbai",
    "Delhi",
    "Bangkok",
    "Singapore",
    "Tokyo",
    "Osaka",
    "Seoul",
    "Beijing",
    "Shanghai",
    "Sydney",
    "Melbourne",
    "Auckland",
    "Toronto",
    "Montreal",
    "Chicago",
    "Boston",
    "Seattle",
    "Denver",
    "Houston",
    "Lima",
    "Santiago",
    "Bogota",
];

const UNIVERSITIES: &[&str] = &[
    "Northbridge University",
    "Eastfield College",
    "the University of Westmoor",
    "Ashford Institute of Technology",
    "Kingsport University",
    "the University of Redhill",
    "Silverlake College",
    "Harborview University",
    "Stonegate University",
    "the Royal Academy of Brightwater",
    "Maple Ridge University",
    "Oakhaven College",
    "the University of Clearwater",
    "Pinecrest Institute",
    "Riverside Polytechnic",
    "Summit State University",
    "the University of Greyport",
    "Lakemont College",
    "Highland Technical University",
    "Crescent Bay University",
    "the University of Fairhaven",
    "Elmwood University",
    "Granite Peak College",
    "Sunvale University",
    "the Institute of Coldbrook",
    "Meadowbrook University",
    "Ironwood College",
    "Bluewater University",
    "the University of Ravensholm",
    "Westbrook Institute",
];

const MAJORS: &[&str] = &[
    "mathematics",
    "physics",
    "chemistry",
    "biology",
    "computer science",
    "economics",
    "history",
    "philosophy",
    "linguistics",
    "psychology",
    "sociology",
    "architecture",
    "civil engineering",
    "mechanical engineering",
    "electrical engineering",
    "astronomy",
    "geology",
    "medicine",
    "law",
    "music",
    "fine arts",
    "literature",
    "political science",
    "anthropology",
    "statistics",
    "marine biology",
    "journalism",
    "nursing",
    "agriculture",
    "archaeology",
];

const EMPLOYERS: &[&str] = &[
    "Northwind Logistics",
    "Bluepeak Software",
    "Crestline Foods",
    "Vantage Robotics",
    "Helios Energy",
    "Cobalt Pharmaceuticals",
    "Redwood Publishing",
    "Silverline Airlines",
    "Ironclad Insurance",
    "Brightwave Media",
    "Summit Bank",
    "Evergreen Motors",
    "Quantum Textiles",
    "Harbor Shipping",
    "Lumen Optics",
    "Pioneer Construction",
    "Atlas Mining",
    "Nimbus Cloud Systems",
    "Orchid Cosmetics",
    "Falcon Aerospace",
    "Granite Telecom",
    "Willow Healthcare",
    "Beacon Consulting",
    "Sapphire Hotels",
    "Meridian Chemicals",
    "Oakleaf Furniture",
    "Polar Beverages",
    "Zenith Semiconductors",
    "Copperfield Retail",
    "Starlight Studios",
    "Riverstone Architects",
    "Maplewood Farms",
    "Tidewater Fisheries",
    "Crimson Games",
    "Horizon Biotech",
    "Kestrel Security",
    "Juniper Education",
    "Aurora Solar",
    "Driftwood Breweries",
    "Vertex Analytics",
];

const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Number of distinct birth dates in a world.
const DATES: usize = 40;

/// An attribute of a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Attribute {
    /// e.g. "March 3, 1972".
    BirthDate,
    /// A city.
    BirthCity,
    /// A university.
    University,
    /// A field of study.
    Major,
    /// A company.
    Employer,
    /// A city.
    WorkCity,
}

impl Attribute {
    /// Every attribute, in rendering-independent order.
    pub const ALL: [Attribute; 6] = [
        Attribute::BirthDate,
        Attribute::BirthCity,
        Attribute::University,
        Attribute::Major,
        Attribute::Employer,
        Attribute::WorkCity,
    ];

    /// The name used in question files.
    pub fn name(self) -> &'static str {
        match self {
            Attribute::BirthDate => "birth_date",
            Attribute::BirthCity => "birth_city",
            Attribute::University => "university",
            Attribute::Major => "major",
            Attribute::Employer => "employer",
            Attribute::WorkCity => "work_city",
        }
    }
}

/// The value pools of one world.
#[derive(Debug, Clone)]
pub struct Pools {
    /// Birth dates (seeded: distinct dates drawn once per world).
    pub dates: Vec<String>,
}

impl Pools {
    /// Draw the seeded pools.
    pub fn new(rng: &mut SplitMix64) -> Pools {
        let mut dates = Vec::with_capacity(DATES);
        while dates.len() < DATES {
            let d = format!(
                "{} {}, {}",
                rng.pick(MONTHS),
                1 + rng.below(28),
                1950 + rng.below(50)
            );
            if !dates.contains(&d) {
                dates.push(d);
            }
        }
        Pools { dates }
    }

    /// The values `attr` can take.
    pub fn values(&self, attr: Attribute) -> Vec<&str> {
        match attr {
            Attribute::BirthDate => self.dates.iter().map(String::as_str).collect(),
            Attribute::BirthCity | Attribute::WorkCity => CITIES.to_vec(),
            Attribute::University => UNIVERSITIES.to_vec(),
            Attribute::Major => MAJORS.to_vec(),
            Attribute::Employer => EMPLOYERS.to_vec(),
        }
    }
}

/// One fictional person.
#[derive(Debug, Clone, Serialize)]
pub struct Person {
    /// e.g. `a0007`.
    pub id: String,
    /// `a` or `b`.
    pub population: String,
    /// Full name, unique in the world.
    pub name: String,
    /// `female` or `male` (selects pronouns).
    pub gender: &'static str,
    /// Birth date text.
    pub birth_date: String,
    /// Birth city.
    pub birth_city: String,
    /// University.
    pub university: String,
    /// Field of study.
    pub major: String,
    /// Employer.
    pub employer: String,
    /// City of work.
    pub work_city: String,
}

impl Person {
    /// The value of `attr`.
    pub fn get(&self, attr: Attribute) -> &str {
        match attr {
            Attribute::BirthDate => &self.birth_date,
            Attribute::BirthCity => &self.birth_city,
            Attribute::University => &self.university,
            Attribute::Major => &self.major,
            Attribute::Employer => &self.employer,
            Attribute::WorkCity => &self.work_city,
        }
    }

    /// Whether she/her pronouns apply.
    pub fn female(&self) -> bool {
        self.gender == "female"
    }
}

/// Most people one world can hold (unique names).
pub fn max_people() -> usize {
    FIRST_NAMES.len() * LAST_NAMES.len()
}

/// Draw `counts[i]` people for population `names[i]`, all names distinct.
pub fn draw_people(
    rng: &mut SplitMix64,
    pools: &Pools,
    populations: &[(&str, usize)],
) -> Vec<Person> {
    let total: usize = populations.iter().map(|(_, n)| n).sum();
    let names = rng.sample_indices(max_people(), total);
    let mut names = names.into_iter();
    let mut people = Vec::with_capacity(total);
    for (pop, count) in populations {
        for i in 0..*count {
            let Some(k) = names.next() else { break };
            let (first, female) = FIRST_NAMES[k % FIRST_NAMES.len()];
            let last = LAST_NAMES[k / FIRST_NAMES.len()];
            let mut value = |attr| (*rng.pick(&pools.values(attr))).to_string();
            people.push(Person {
                id: format!("{pop}{i:04}"),
                population: pop.to_string(),
                name: format!("{first} {last}"),
                gender: if female { "female" } else { "male" },
                birth_date: value(Attribute::BirthDate),
                birth_city: value(Attribute::BirthCity),
                university: value(Attribute::University),
                major: value(Attribute::Major),
                employer: value(Attribute::Employer),
                work_city: value(Attribute::WorkCity),
            });
        }
    }
    people
}
