"""Writes the packaged Chinese e-commerce catalog (``zh_shop.jsonl``) and its query set
(``zh_shop_queries.jsonl``) from the hand-written vocabularies below. Deterministic: the same
code writes the same bytes (a seeded RNG, sorted output).

    python eval/tools/build_zh_shop.py      # rewrites the two files in genrec/datasets/

A one-off generator kept beside the evaluation, outside the package: the wheel ships the data it
wrote, not the generator.

Every product, its brand and model number is invented for this project. A query's relevant
items are the products whose attributes satisfy the query's need (category, type, season,
material, gender ...), so relevance is defined by the catalog, not picked by hand; every third
query is a validation query (choices are made on those), the rest are test queries.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parents[2] / "genrec" / "datasets"
CATALOG = HERE / "zh_shop.jsonl"
QUERIES = HERE / "zh_shop_queries.jsonl"

BRANDS = ["森屿", "棉语", "拾光", "简木", "青橙", "南山", "云朵", "北辰", "木槿", "初禾"]
TECH_BRANDS = ["声动", "极光", "迅驰", "小青", "曜石"]
COLORS = ["白色", "黑色", "藏青", "灰色", "卡其", "浅蓝", "酒红", "米色", "军绿", "粉色"]
ADULT_SIZES = "S|M|L|XL|XXL"
KID_SIZES = "90|100|110|120|130|140|150"
SEASON_WORDS = {
    "春季": "春天",
    "夏季": "夏天",
    "秋季": "秋天",
    "冬季": "冬天",
    "春秋": "春秋两季",
    "四季": "一年四季",
}


@dataclass(frozen=True)
class Kind:
    """One product type: where it sits, what it is made of, when it is worn, how it is sold."""

    category: str
    type: str
    seasons: tuple[str, ...]
    materials: tuple[str, ...]
    styles: tuple[str, ...]
    gender: str  # 男 / 女 / 童 / 通用
    sizes: str
    count: int
    use: str  # what the description says it is for


CLOTHES = [
    # menswear
    Kind(
        "男装",
        "T恤",
        ("夏季",),
        ("纯棉", "莫代尔", "冰丝"),
        ("圆领短袖", "V领短袖", "印花短袖", "宽松短袖"),
        "男",
        ADULT_SIZES,
        9,
        "日常通勤和运动",
    ),  # noqa: E501
    Kind(
        "男装",
        "衬衫",
        ("春秋", "夏季"),
        ("纯棉", "亚麻", "牛津纺"),
        ("长袖商务", "短袖休闲", "免烫修身"),
        "男",
        ADULT_SIZES,
        7,
        "上班和商务场合",
    ),  # noqa: E501
    Kind(
        "男装",
        "夹克",
        ("春秋",),
        ("涤纶", "棉", "工装布"),
        ("立领", "连帽", "飞行员"),
        "男",
        ADULT_SIZES,
        6,
        "春秋外出",
    ),  # noqa: E501
    Kind(
        "男装",
        "羽绒服",
        ("冬季",),
        ("白鸭绒", "白鹅绒"),
        ("中长款连帽", "短款立领", "加厚"),
        "男",
        ADULT_SIZES,
        6,
        "冬天保暖",
    ),  # noqa: E501
    Kind(
        "男装",
        "牛仔裤",
        ("四季",),
        ("牛仔布", "弹力棉"),
        ("直筒", "修身小脚", "宽松"),
        "男",
        "28|29|30|31|32|33|34|36",
        6,
        "日常休闲",
    ),  # noqa: E501
    Kind(
        "男装",
        "卫衣",
        ("春秋",),
        ("纯棉", "加绒棉"),
        ("连帽", "圆领", "拉链开衫"),
        "男",
        ADULT_SIZES,
        5,
        "休闲和运动",
    ),  # noqa: E501
    Kind(
        "男装",
        "短裤",
        ("夏季",),
        ("纯棉", "速干面料", "亚麻"),
        ("运动", "工装", "沙滩"),
        "男",
        ADULT_SIZES,
        5,
        "夏天运动和度假",
    ),  # noqa: E501
    Kind(
        "男装",
        "毛衣",
        ("冬季", "秋季"),
        ("羊毛", "羊绒"),
        ("高领", "圆领", "V领"),
        "男",
        ADULT_SIZES,
        5,
        "秋冬保暖",
    ),  # noqa: E501
    Kind(
        "男装",
        "Polo衫",
        ("夏季",),
        ("纯棉", "珠地棉"),
        ("商务翻领", "撞色"),
        "男",
        ADULT_SIZES,
        4,
        "商务休闲",
    ),  # noqa: E501
    # womenswear
    Kind(
        "女装",
        "连衣裙",
        ("夏季", "春季"),
        ("雪纺", "真丝", "纯棉"),
        ("碎花", "法式收腰", "吊带", "长款"),
        "女",
        "XS|S|M|L|XL",
        9,
        "约会和度假",
    ),  # noqa: E501
    Kind(
        "女装",
        "T恤",
        ("夏季",),
        ("纯棉", "莫代尔"),
        ("短袖印花", "修身短袖", "宽松短袖"),
        "女",
        "XS|S|M|L|XL",
        7,
        "日常搭配",
    ),  # noqa: E501
    Kind(
        "女装",
        "衬衫",
        ("春秋", "夏季"),
        ("真丝", "纯棉", "雪纺"),
        ("职业长袖", "泡泡袖", "宽松"),
        "女",
        "XS|S|M|L|XL",
        6,
        "通勤上班",
    ),  # noqa: E501
    Kind(
        "女装",
        "半身裙",
        ("夏季", "春季"),
        ("雪纺", "针织", "牛仔布"),
        ("百褶", "A字", "包臀"),
        "女",
        "XS|S|M|L|XL",
        5,
        "通勤和约会",
    ),  # noqa: E501
    Kind(
        "女装",
        "风衣",
        ("春秋",),
        ("棉", "涤纶"),
        ("中长款双排扣", "短款收腰"),
        "女",
        "XS|S|M|L|XL",
        5,
        "春秋挡风",
    ),  # noqa: E501
    Kind(
        "女装",
        "羽绒服",
        ("冬季",),
        ("白鸭绒", "白鹅绒"),
        ("长款过膝", "短款面包服", "轻薄"),
        "女",
        "XS|S|M|L|XL",
        6,
        "冬天保暖",
    ),  # noqa: E501
    Kind(
        "女装",
        "毛衣",
        ("冬季", "秋季"),
        ("羊毛", "羊绒", "马海毛"),
        ("高领打底", "宽松套头", "开衫"),
        "女",
        "XS|S|M|L|XL",
        6,
        "秋冬保暖",
    ),  # noqa: E501
    Kind(
        "女装",
        "阔腿裤",
        ("四季",),
        ("西装面料", "冰丝", "牛仔布"),
        ("高腰垂感", "九分"),
        "女",
        "XS|S|M|L|XL",
        5,
        "通勤和日常",
    ),  # noqa: E501
    Kind(
        "女装",
        "瑜伽裤",
        ("四季",),
        ("锦纶", "氨纶"),
        ("高腰提臀", "九分"),
        "女",
        "XS|S|M|L|XL",
        4,
        "瑜伽和健身",
    ),  # noqa: E501
    # children's wear
    Kind(
        "童装",
        "儿童T恤",
        ("夏季",),
        ("纯棉",),
        ("卡通短袖", "恐龙印花", "条纹短袖"),
        "童",
        KID_SIZES,
        6,
        "孩子上学和玩耍",
    ),  # noqa: E501
    Kind(
        "童装",
        "儿童羽绒服",
        ("冬季",),
        ("白鸭绒",),
        ("连帽加厚", "轻薄"),
        "童",
        KID_SIZES,
        5,
        "冬天保暖",
    ),  # noqa: E501
    Kind(
        "童装",
        "儿童睡衣",
        ("四季", "夏季", "冬季"),
        ("纯棉", "珊瑚绒"),
        ("卡通套装", "长袖套装", "短袖套装"),
        "童",
        KID_SIZES,
        6,
        "在家睡觉",
    ),  # noqa: E501
    Kind(
        "童装",
        "女童连衣裙",
        ("夏季",),
        ("纯棉", "雪纺"),
        ("公主", "碎花", "背心"),
        "童",
        KID_SIZES,
        5,
        "夏天出游",
    ),  # noqa: E501
    Kind(
        "童装",
        "儿童卫衣",
        ("春秋",),
        ("纯棉", "加绒棉"),
        ("连帽", "卡通圆领"),
        "童",
        KID_SIZES,
        5,
        "春秋上学",
    ),  # noqa: E501
    Kind(
        "童装",
        "婴儿连体衣",
        ("四季",),
        ("有机棉", "纯棉"),
        ("长袖哈衣", "短袖爬服"),
        "童",
        "59|66|73|80|90",
        5,
        "宝宝日常穿着",
    ),  # noqa: E501
    Kind(
        "童装",
        "儿童外套",
        ("春秋", "冬季"),
        ("涤纶", "摇粒绒"),
        ("防风冲锋衣", "摇粒绒开衫"),
        "童",
        KID_SIZES,
        5,
        "户外活动",
    ),  # noqa: E501
    # shoes
    Kind(
        "鞋靴",
        "跑步鞋",
        ("四季",),
        ("网面", "飞织"),
        ("缓震", "轻便透气", "竞速"),
        "男",
        "39|40|41|42|43|44",
        6,
        "跑步和健身",
    ),  # noqa: E501
    Kind(
        "鞋靴",
        "跑步鞋",
        ("四季",),
        ("网面", "飞织"),
        ("缓震", "轻便透气"),
        "女",
        "35|36|37|38|39|40",
        5,
        "跑步和健身",
    ),  # noqa: E501
    Kind(
        "鞋靴",
        "皮鞋",
        ("四季",),
        ("真皮", "牛皮"),
        ("商务正装", "休闲乐福", "系带德比"),
        "男",
        "38|39|40|41|42|43|44",
        6,
        "上班和正式场合",
    ),  # noqa: E501
    Kind(
        "鞋靴",
        "高跟鞋",
        ("四季",),
        ("羊皮", "漆皮"),
        ("尖头细跟", "粗跟玛丽珍"),
        "女",
        "34|35|36|37|38|39",
        5,
        "职场和宴会",
    ),  # noqa: E501
    Kind(
        "鞋靴",
        "凉鞋",
        ("夏季",),
        ("牛皮", "橡胶"),
        ("平底", "坡跟", "沙滩"),
        "女",
        "35|36|37|38|39|40",
        5,
        "夏天出行",
    ),  # noqa: E501
    Kind(
        "鞋靴",
        "雪地靴",
        ("冬季",),
        ("羊皮毛一体", "翻毛皮"),
        ("中筒", "短筒"),
        "女",
        "35|36|37|38|39|40",
        4,
        "冬天防寒",
    ),  # noqa: E501
    Kind(
        "鞋靴",
        "马丁靴",
        ("秋季", "冬季"),
        ("牛皮",),
        ("八孔", "切尔西"),
        "男",
        "38|39|40|41|42|43|44",
        4,
        "秋冬百搭",
    ),  # noqa: E501
    Kind(
        "鞋靴",
        "帆布鞋",
        ("春秋", "夏季"),
        ("帆布",),
        ("高帮", "低帮"),
        "通用",
        "35|36|37|38|39|40|41|42|43|44",
        5,
        "学生日常",
    ),  # noqa: E501
    Kind(
        "鞋靴",
        "拖鞋",
        ("夏季",),
        ("EVA", "棉麻"),
        ("居家防滑", "洞洞鞋"),
        "通用",
        "36|37|38|39|40|41|42|43|44",
        4,
        "居家和海边",
    ),  # noqa: E501
    Kind(
        "鞋靴",
        "儿童运动鞋",
        ("四季",),
        ("网面", "皮面"),
        ("魔术贴", "发光"),
        "童",
        "26|28|30|32|34|36",
        5,
        "孩子上学运动",
    ),  # noqa: E501
]

TECH = [
    Kind(
        "数码电子",
        "蓝牙耳机",
        ("四季",),
        ("塑料",),
        ("真无线主动降噪", "半入耳", "运动挂耳"),
        "通用",
        "",
        7,
        "通勤听歌和通话",
    ),  # noqa: E501
    Kind(
        "数码电子",
        "头戴式耳机",
        ("四季",),
        ("金属", "蛋白皮"),
        ("主动降噪", "游戏电竞"),
        "通用",
        "",
        5,
        "降噪听歌和游戏",
    ),  # noqa: E501
    Kind(
        "数码电子",
        "手机",
        ("四季",),
        ("铝合金", "玻璃"),
        ("5G 拍照", "长续航", "折叠屏"),
        "通用",
        "6.1英寸|6.7英寸",
        7,
        "拍照和日常使用",
    ),  # noqa: E501
    Kind(
        "数码电子",
        "平板电脑",
        ("四季",),
        ("铝合金",),
        ("学习办公", "影音娱乐"),
        "通用",
        "10.9英寸|12.9英寸",
        5,
        "学习和追剧",
    ),  # noqa: E501
    Kind(
        "数码电子",
        "笔记本电脑",
        ("四季",),
        ("铝合金", "镁合金"),
        ("轻薄办公", "游戏本", "高性能创作"),
        "通用",
        "14英寸|16英寸",
        6,
        "办公和游戏",
    ),  # noqa: E501
    Kind(
        "数码电子",
        "智能手表",
        ("四季",),
        ("不锈钢", "钛合金"),
        ("心率血氧", "运动GPS"),
        "通用",
        "42mm|46mm",
        5,
        "运动健康监测",
    ),  # noqa: E501
    Kind(
        "数码电子",
        "充电宝",
        ("四季",),
        ("塑料", "铝合金"),
        ("20000毫安快充", "磁吸无线"),
        "通用",
        "",
        5,
        "出门充电",
    ),  # noqa: E501
    Kind(
        "数码电子",
        "机械键盘",
        ("四季",),
        ("铝合金", "塑料"),
        ("87键 红轴", "104键 茶轴", "无线三模"),
        "通用",
        "",
        5,
        "办公和游戏打字",
    ),  # noqa: E501
    Kind("数码电子", "无线鼠标", ("四季",), ("塑料",), ("静音", "人体工学"), "通用", "", 4, "办公"),  # noqa: E501
    Kind(
        "数码电子",
        "蓝牙音箱",
        ("四季",),
        ("布面", "金属"),
        ("便携防水", "桌面重低音"),
        "通用",
        "",
        5,
        "户外和居家听歌",
    ),  # noqa: E501
]

HOME = [
    Kind(
        "家居",
        "床上四件套",
        ("四季", "夏季"),
        ("纯棉", "天丝", "磨毛"),
        ("简约纯色", "北欧格子", "田园碎花"),
        "通用",
        "1.5米|1.8米",
        7,
        "卧室床品",
    ),  # noqa: E501
    Kind(
        "家居",
        "被子",
        ("冬季", "夏季", "春秋"),
        ("蚕丝", "羽绒", "大豆纤维"),
        ("加厚冬被", "轻薄夏凉被", "春秋被"),
        "通用",
        "1.5米|1.8米|2米",
        7,
        "睡觉盖",
    ),  # noqa: E501
    Kind(
        "家居",
        "枕头",
        ("四季",),
        ("乳胶", "记忆棉", "荞麦"),
        ("护颈", "单人"),
        "通用",
        "",
        5,
        "护颈助眠",
    ),  # noqa: E501
    Kind(
        "家居",
        "毛巾",
        ("四季",),
        ("纯棉", "竹纤维"),
        ("加厚吸水", "儿童小方巾"),
        "通用",
        "",
        4,
        "洗脸洗澡",
    ),  # noqa: E501
    Kind(
        "家居",
        "收纳盒",
        ("四季",),
        ("塑料", "布艺", "竹木"),
        ("衣物收纳", "桌面收纳"),
        "通用",
        "",
        4,
        "整理房间",
    ),  # noqa: E501
    Kind(
        "家居",
        "台灯",
        ("四季",),
        ("金属", "塑料"),
        ("护眼LED", "充电折叠"),
        "通用",
        "",
        4,
        "读书写字",
    ),  # noqa: E501
    Kind(
        "家居",
        "保温杯",
        ("四季", "冬季"),
        ("316不锈钢", "钛"),
        ("大容量", "便携弹盖"),
        "通用",
        "500毫升|1升",
        5,
        "上班喝水",
    ),  # noqa: E501
    Kind(
        "家居",
        "炒锅",
        ("四季",),
        ("不粘涂层", "铸铁", "不锈钢"),
        ("平底", "麦饭石"),
        "通用",
        "28厘米|32厘米",
        5,
        "家里做饭",
    ),  # noqa: E501
    Kind(
        "家居",
        "地毯",
        ("秋季", "冬季"),
        ("羊毛", "涤纶"),
        ("客厅", "卧室床边"),
        "通用",
        "1.2x1.6米|1.6x2.3米",
        4,
        "客厅卧室",
    ),  # noqa: E501
    Kind(
        "家居",
        "窗帘",
        ("四季",),
        ("棉麻", "涤纶"),
        ("全遮光", "透光纱帘"),
        "通用",
        "2米宽|3米宽",
        4,
        "卧室客厅",
    ),  # noqa: E501
]

GENDER_WORDS = {"男": "男士", "女": "女士", "童": "", "通用": ""}
MODEL_LETTERS = ["A", "S", "X", "Pro", "Air", "Max", "Lite", "Neo"]


def _products() -> list[dict]:
    rng = random.Random(15)
    rows: list[dict] = []
    for kind in CLOTHES + TECH + HOME:
        for n in range(kind.count):
            season = kind.seasons[n % len(kind.seasons)]
            material = kind.materials[(n // len(kind.seasons)) % len(kind.materials)]
            style = kind.styles[n % len(kind.styles)]
            color = rng.choice(COLORS)
            tech = kind.category == "数码电子"
            brand = rng.choice(TECH_BRANDS if tech else BRANDS)
            who = GENDER_WORDS[kind.gender]
            if tech:
                model = f"{rng.choice(MODEL_LETTERS)}{rng.randint(2, 20)}"
                title = f"{brand} {model} {style}{kind.type} {color}"
            elif kind.category == "家居":
                model = ""
                title = f"{brand} {material}{style}{kind.type}"
            else:
                model = ""
                title = f"{brand} {who}{material}{style}{kind.type} {season}新款"
            price = rng.choice([59, 79, 99, 129, 159, 199, 269, 299, 399, 599, 899, 1299])
            if tech:
                price = rng.choice([99, 199, 299, 499, 899, 1499, 2999, 4999, 6999])
            description = (
                f"{material}材质，{style}设计，{color}。适合{SEASON_WORDS[season]}{kind.use}。"
            )
            if kind.sizes:
                description += f"可选规格：{kind.sizes.replace('|', '、')}。"
            attributes = {
                "type": kind.type,
                "season": season,
                "material": material,
                "gender": kind.gender,
                "color": color,
                "brand": brand,
                "price": price,
            }
            if kind.sizes:
                attributes["size"] = kind.sizes
            if model:
                attributes["model"] = model
            rows.append(
                {
                    "title": title,
                    "category": kind.category,
                    "tags": [kind.type, season, material, style],
                    "description": description,
                    "attributes": attributes,
                    "popularity": rng.randint(10, 5000),
                }
            )
    for i, row in enumerate(rows, start=1):
        row["id"] = f"zh{i:04d}"
    return [{"id": r.pop("id"), **r} for r in rows]


# (query, need): a product is relevant when every field of the need matches; a list value
# means any of them. Phrasings are what a shopper types: synonyms ("夏天" for 夏季, "男士" for
# 男装), colloquial asks and bare keywords, so neither channel gets them all for free.
Q = [
    ("我想买夏天穿的男装T恤", {"category": "男装", "type": "T恤", "season": "夏季"}),
    ("男装", {"category": "男装"}),
    ("女装连衣裙", {"category": "女装", "type": "连衣裙"}),
    ("冬天穿的女士羽绒服", {"category": "女装", "type": "羽绒服"}),
    ("男士羽绒服 加厚保暖", {"category": "男装", "type": "羽绒服"}),
    ("给孩子买件羽绒服", {"type": "儿童羽绒服"}),
    ("纯棉男士T恤", {"category": "男装", "type": "T恤", "material": "纯棉"}),
    ("真丝连衣裙", {"type": "连衣裙", "material": "真丝"}),
    ("上班穿的男士衬衫", {"category": "男装", "type": "衬衫"}),
    ("女士衬衫", {"category": "女装", "type": "衬衫"}),
    ("亚麻衬衫 夏天透气", {"type": "衬衫", "material": "亚麻"}),
    ("春秋季男士夹克外套", {"category": "男装", "type": "夹克"}),
    ("男士牛仔裤", {"category": "男装", "type": "牛仔裤"}),
    ("连帽卫衣 男", {"category": "男装", "type": "卫衣"}),
    ("夏天的运动短裤", {"category": "男装", "type": "短裤"}),
    ("羊绒毛衣", {"type": "毛衣", "material": "羊绒"}),
    ("女士毛衣 秋冬", {"category": "女装", "type": "毛衣"}),
    ("男士Polo衫", {"type": "Polo衫"}),
    ("碎花裙子", {"type": ["连衣裙", "半身裙", "女童连衣裙"], "style_has": "碎花"}),
    ("半身裙", {"type": "半身裙"}),
    ("春秋风衣 女", {"type": "风衣"}),
    ("高腰阔腿裤", {"type": "阔腿裤"}),
    ("健身穿的瑜伽裤", {"type": "瑜伽裤"}),
    ("女生夏天穿的T恤", {"category": "女装", "type": "T恤"}),
    ("童装", {"category": "童装"}),
    ("儿童T恤 纯棉短袖", {"type": "儿童T恤"}),
    ("小孩睡衣", {"type": "儿童睡衣"}),
    ("女童夏天的裙子", {"type": "女童连衣裙"}),
    ("宝宝连体衣", {"type": "婴儿连体衣"}),
    ("儿童卫衣", {"type": "儿童卫衣"}),
    ("孩子户外外套", {"type": "儿童外套"}),
    ("男士跑步鞋", {"type": "跑步鞋", "gender": "男"}),
    ("女款跑鞋", {"type": "跑步鞋", "gender": "女"}),
    ("运动鞋", {"type": ["跑步鞋", "儿童运动鞋"]}),
    ("真皮男士皮鞋", {"type": "皮鞋"}),
    ("高跟鞋", {"type": "高跟鞋"}),
    ("夏天穿的凉鞋", {"type": "凉鞋"}),
    ("冬天的雪地靴", {"type": "雪地靴"}),
    ("马丁靴", {"type": "马丁靴"}),
    ("帆布鞋", {"type": "帆布鞋"}),
    ("拖鞋", {"type": "拖鞋"}),
    ("小孩运动鞋", {"type": "儿童运动鞋"}),
    ("鞋子", {"category": "鞋靴"}),
    ("降噪耳机", {"type": ["蓝牙耳机", "头戴式耳机"], "style_has": "降噪"}),
    ("蓝牙耳机", {"type": "蓝牙耳机"}),
    ("头戴式耳机", {"type": "头戴式耳机"}),
    ("拍照好的手机", {"type": "手机"}),
    ("平板电脑", {"type": "平板电脑"}),
    ("轻薄笔记本电脑", {"type": "笔记本电脑"}),
    ("打游戏的笔记本", {"type": "笔记本电脑", "style_has": "游戏"}),
    ("智能手表 运动", {"type": "智能手表"}),
    ("充电宝 快充", {"type": "充电宝"}),
    ("机械键盘", {"type": "机械键盘"}),
    ("无线鼠标", {"type": "无线鼠标"}),
    ("蓝牙音箱", {"type": "蓝牙音箱"}),
    ("数码产品", {"category": "数码电子"}),
    ("纯棉床上四件套", {"type": "床上四件套", "material": "纯棉"}),
    ("床单被套", {"type": "床上四件套"}),
    ("冬天盖的厚被子", {"type": "被子", "season": "冬季"}),
    ("夏凉被", {"type": "被子", "season": "夏季"}),
    ("蚕丝被", {"type": "被子", "material": "蚕丝"}),
    ("护颈枕头", {"type": "枕头"}),
    ("毛巾", {"type": "毛巾"}),
    ("收纳盒", {"type": "收纳盒"}),
    ("护眼台灯", {"type": "台灯"}),
    ("保温杯", {"type": "保温杯"}),
    ("不粘锅", {"type": "炒锅", "material": "不粘涂层"}),
    ("炒菜锅", {"type": "炒锅"}),
    ("客厅地毯", {"type": "地毯"}),
    ("遮光窗帘", {"type": "窗帘"}),
    ("家居用品", {"category": "家居"}),
    ("羊毛材质的衣服", {"material": "羊毛", "category": ["男装", "女装", "童装"]}),
    ("冬季女装", {"category": "女装", "season": "冬季"}),
    ("夏季男装", {"category": "男装", "season": "夏季"}),
    ("女士羽绒服 白鹅绒", {"category": "女装", "type": "羽绒服", "material": "白鹅绒"}),
    ("男士冰丝T恤", {"category": "男装", "type": "T恤", "material": "冰丝"}),
    ("雪纺连衣裙 夏", {"type": "连衣裙", "material": "雪纺"}),
    ("儿童纯棉睡衣", {"type": "儿童睡衣", "material": "纯棉"}),
    ("女士凉鞋 平底", {"type": "凉鞋", "style_has": "平底"}),
    ("乳胶枕", {"type": "枕头", "material": "乳胶"}),
]


def _matches(product: dict, need: dict) -> bool:
    fields = {**product["attributes"], "category": product["category"]}
    for key, want in need.items():
        if key == "style_has":
            if want not in product["tags"][3]:
                return False
            continue
        allowed = want if isinstance(want, list) else [want]
        if key == "model":
            fields["model"] = product["attributes"].get("model")
        if fields.get(key) not in allowed:
            return False
    return True


def _exact_word_queries(products: list[dict]) -> list[tuple[str, dict]]:
    """Queries by exact product words, where a shopper knows what they want: a brand with a
    model number (the first product of each electronics type), and a brand within a category.
    Built from the catalog, so they follow it when the vocabularies change."""
    out: list[tuple[str, dict]] = []
    seen: set[str] = set()
    for p in products:
        a = p["attributes"]
        if p["category"] == "数码电子" and a["type"] not in seen:
            seen.add(a["type"])
            out.append((f"{a['brand']} {a['model']}", {"brand": a["brand"], "model": a["model"]}))
    for brand, category in [("棉语", "女装"), ("南山", "男装"), ("初禾", "童装"), ("青橙", "鞋靴")]:
        out.append((f"{brand}{category}", {"brand": brand, "category": category}))
    return out


def _queries(products: list[dict]) -> list[dict]:
    out = []
    for i, (text, need) in enumerate(Q + _exact_word_queries(products), start=1):
        relevant = [p["id"] for p in products if _matches(p, need)]
        if not relevant:
            raise ValueError(f"query {text!r} has no relevant product; fix its need {need}")
        split = "validation" if i % 3 == 1 else "test"
        out.append(
            {"id": f"q{i:03d}", "query": text, "split": split, "need": need, "relevant": relevant}
        )
    return out


def _write(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main() -> None:
    products = _products()
    queries = _queries(products)
    _write(CATALOG, products)
    _write(QUERIES, queries)
    print(f"{len(products)} products -> {CATALOG}\n{len(queries)} queries -> {QUERIES}")


if __name__ == "__main__":
    main()
